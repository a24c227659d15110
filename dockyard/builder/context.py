"""The build context as `docker build` takes it: a directory (read in place), `-` (a tar, or a
bare Dockerfile, on stdin) or a git URL (`git://…`, `https://….git`, `git@…`, `#ref:subdir`)."""

from __future__ import annotations

import io
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dockyard.builder.dockerignore import Matcher, read_patterns
from dockyard.builder.errors import BuildError
from dockyard.engine.layers import LayerError, Limits, apply_layer

_GIT_URL = re.compile(r"^(git://|git@|github\.com/)|^https?://\S+\.git(#.*)?$")
MAX_STDIN_DOCKERFILE = 16 << 20


@dataclass(slots=True)
class Context:
    root: Path | None  # None: no files (a Dockerfile on stdin)
    dockerfile: str
    matcher: Matcher
    local: bool  # a person's directory, whose file checksums are worth caching


def is_git_url(text: str) -> bool:
    return bool(_GIT_URL.match(text))


def _is_archive(head: bytes) -> bool:
    return (
        head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd"))
        or head[257:262] == b"ustar"
    )


def _read_dockerfile(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BuildError(f"Cannot locate specified Dockerfile: {path.name}") from None
    except IsADirectoryError:
        raise BuildError(f"the Dockerfile {path} is a directory") from None
    except OSError as exc:
        raise BuildError(f"cannot read the Dockerfile {path}: {exc.strerror}") from None
    return data.decode("utf-8", "surrogateescape")


def _matcher(root: Path | None) -> Matcher:
    if root is None:
        return Matcher([])
    try:
        text = (root / ".dockerignore").read_text(errors="surrogateescape")
    except (FileNotFoundError, NotADirectoryError):
        return Matcher([])
    try:
        return Matcher(read_patterns(text))
    except ValueError as exc:
        raise BuildError(f"error reading .dockerignore: {exc}") from exc


def _dockerfile_in(root: Path, name: str | None, *, cwd_relative: bool) -> str:
    if name is None:
        for candidate in ("Dockerfile", "dockerfile"):
            if (root / candidate).is_file():
                return _read_dockerfile(root / candidate)
        raise BuildError("Cannot locate specified Dockerfile: Dockerfile")
    path = Path(name)
    if not path.is_absolute():
        in_cwd = Path.cwd() / path
        path = in_cwd if cwd_relative and in_cwd.exists() else root / path
    if not cwd_relative:
        real = os.path.realpath(path)
        if not real.startswith(os.path.realpath(root) + "/"):
            raise BuildError(f"the Dockerfile {name} is outside the build context")
    return _read_dockerfile(path)


def open_context(
    source: str, dockerfile: str | None, *, stdin: BinaryIO, scratch: Path
) -> Context:
    """Open the context named on the command line; temporary files go under `scratch`."""
    if source == "-":
        return _from_stdin(dockerfile, stdin, scratch)
    if is_git_url(source):
        root = _clone(source, scratch)
        return Context(root, _dockerfile_in(root, dockerfile, cwd_relative=False),
                       _matcher(root), False)
    root = Path(source)
    if not root.is_dir():
        raise BuildError(f'unable to prepare context: path "{source}" not found')
    if dockerfile == "-":
        text = stdin.read(MAX_STDIN_DOCKERFILE + 1).decode("utf-8", "surrogateescape")
    else:
        text = _dockerfile_in(root, dockerfile, cwd_relative=True)
    return Context(root, text, _matcher(root), True)


def _from_stdin(dockerfile: str | None, stdin: BinaryIO, scratch: Path) -> Context:
    if dockerfile == "-":
        raise BuildError("invalid argument: can't use stdin for both build context and dockerfile")
    head = stdin.read(512)
    if not _is_archive(head):
        rest = stdin.read(MAX_STDIN_DOCKERFILE)
        return Context(None, (head + rest).decode("utf-8", "surrogateescape"), Matcher([]), False)
    root = scratch / "context"
    root.mkdir(mode=0o755)
    stream = io.BufferedReader(_Prefixed(head, stdin))  # type: ignore[arg-type]
    try:
        result = apply_layer(stream, root, Limits.from_env())  # type: ignore[arg-type]
    except LayerError as exc:
        raise BuildError(f"invalid build context archive: {exc}") from exc
    for warning in result.warnings:
        if "device" in warning:
            raise BuildError(f"invalid build context archive: {warning}")
    return Context(root, _dockerfile_in(root, dockerfile, cwd_relative=False),
                   _matcher(root), False)


class _Prefixed(io.RawIOBase):
    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head = head
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _git(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env)


def _clone(url: str, scratch: Path) -> Path:
    """A checkout of `url#ref:subdir`; returns the context directory inside it."""
    remote, _, fragment = url.partition("#")
    ref, _, subdir = fragment.partition(":")
    if remote.startswith("github.com/"):
        remote = "https://" + remote
    checkout = scratch / "git"
    for args in (["init", "-q", str(checkout)], ["remote", "add", "origin", remote]):
        done = _git(args, cwd=checkout if args[0] == "remote" else None)
        if done.returncode:
            raise BuildError(f"unable to prepare context: git {args[0]}: {done.stderr.strip()}")
    wanted = ref or "HEAD"
    fetched = _git(["fetch", "-q", "--depth", "1", "origin", wanted], cwd=checkout)
    if fetched.returncode:
        fetched = _git(["fetch", "-q", "origin"], cwd=checkout)
        if fetched.returncode:
            raise BuildError(
                f"unable to prepare context: unable to fetch {remote}: {fetched.stderr.strip()}"
            )
        target = wanted if wanted != "HEAD" else "origin/HEAD"
    else:
        target = "FETCH_HEAD"
    done = _git(["checkout", "-q", "--detach", target], cwd=checkout)
    if done.returncode:
        raise BuildError(f"unable to prepare context: git checkout {ref}: {done.stderr.strip()}")
    done = _git(["submodule", "update", "-q", "--init", "--recursive", "--depth", "1"],
                cwd=checkout)
    if done.returncode:
        raise BuildError(f"unable to prepare context: git submodules: {done.stderr.strip()}")
    root = checkout / subdir if subdir else checkout
    real = os.path.realpath(root)
    if real != os.path.realpath(checkout) and not real.startswith(
        os.path.realpath(checkout) + "/"
    ):
        raise BuildError(f"unable to prepare context: subdirectory {subdir} is outside the "
                         "repository")
    if not os.path.isdir(real):
        raise BuildError(f"unable to prepare context: {subdir} not a directory in {remote}")
    return Path(real)
