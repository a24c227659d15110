"""A real git server for the tests: a bare repository whose post-receive hook delivers a
GitHub-style push webhook, signed with the webhook secret, after every `git push`."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from tests.builds.conftest import git

HOOK = """#!{python}
import hashlib, hmac, json, subprocess, sys, urllib.request, uuid

URL = {url!r}
SECRET = {secret!r}
for line in sys.stdin:
    old, new, ref = line.split()
    if new == "0" * 40:
        continue
    message = subprocess.run(
        ["git", "log", "-1", "--format=%B", new], capture_output=True, text=True
    ).stdout
    body = json.dumps({{
        "ref": ref, "before": old, "after": new, "created": old == "0" * 40,
        "deleted": False, "forced": False,
        "head_commit": {{"id": new, "message": message.strip()}},
        "commits": [{{"id": new, "message": message.strip()}}],
    }}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(URL, data=body, method="POST", headers={{
        "Content-Type": "application/json", "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": signature,
        "User-Agent": "GitHub-Hookshot/test",
    }})
    with urllib.request.urlopen(request, timeout=30) as response:
        print("webhook:", response.status, response.read().decode())
"""


class GitServer:
    def __init__(self, base: Path, branch: str = "main") -> None:
        self.bare = base / "server.git"
        self.work = base / "checkout"
        self.branch = branch
        subprocess.run(
            ["git", "init", "-q", "--bare", f"--initial-branch={branch}", str(self.bare)],
            check=True,
        )
        subprocess.run(
            ["git", "clone", "-q", str(self.bare), str(self.work)], check=True, capture_output=True
        )
        git("checkout", "-q", "-b", branch, cwd=self.work)

    def install_hook(self, url: str, secret: str) -> None:
        hook = self.bare / "hooks" / "post-receive"
        hook.write_text(HOOK.format(python=sys.executable, url=url, secret=secret))
        hook.chmod(hook.stat().st_mode | stat.S_IXUSR)

    def commit(self, files: dict[str, str], message: str) -> str:
        for name, text in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def push(self, *refs: str) -> str:
        """`git push`; returns what the hook printed (git relays it as remote: lines)."""
        result = subprocess.run(
            ["git", "push", "origin", *(refs or (self.branch,))],
            cwd=self.work,
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stderr

    def tag(self, name: str) -> None:
        git("tag", name, cwd=self.work)
