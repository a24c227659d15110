"""Real git servers for the tests: a bare repository whose post-receive hook delivers a
GitHub-style push webhook, signed with the webhook secret, after every `git push`; smart HTTP
behind Basic auth; and sshd that lets in one deploy key."""

from __future__ import annotations

import base64
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class GitHttpServer:
    """Smart HTTP git behind Basic auth (`git http-backend` as CGI), like a private
    repository on a git host that takes a username and an access token."""

    def __init__(self, root: Path, username: str, token: str) -> None:
        self.root = root
        expected = "Basic " + base64.b64encode(f"{username}:{token}".encode()).decode()
        self.requests: list[str] = []
        log = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                log.append(f"{self.command} {self.path}")
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                env = {
                    "GIT_PROJECT_ROOT": str(root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "REQUEST_METHOD": self.command,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_USER": username,
                    "PATH": "/usr/bin:/bin",
                }
                if self.headers.get("Content-Encoding"):
                    env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
                if self.headers.get("Git-Protocol"):
                    env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
                out = subprocess.run(
                    ["git", "http-backend"], input=body, env=env, capture_output=True
                ).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode().split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, repository: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{repository}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class GitSshServer:
    """An sshd on 127.0.0.1 that lets in only one public key (a hub's deploy key), started
    once that key is known; its port (and so its URLs) is known before."""

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o700)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, path: Path) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{path}"

    def start(self, public_key: str) -> None:
        base = self.base
        host_key = base / "host_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True
        )
        authorized = base / "authorized_keys"
        authorized.write_text(public_key + "\n")
        authorized.chmod(0o600)
        config = base / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"AuthorizedKeysFile {authorized}\nPidFile {base / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        with open(base / "sshd.log", "wb") as log:
            self.process = subprocess.Popen(
                [sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"sshd did not start: {(base / 'sshd.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
