"""Small filesystem helpers: atomic writes, file locks, and paths resolved inside a root."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import posixpath
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to a temporary file beside `path` and rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(data):x}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, indent=1, sort_keys=True).encode() + b"\n")


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return default


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False, blocking: bool = True) -> Iterator[bool]:
    """flock(2) on `path`; yields False (holding nothing) when non-blocking and taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        flags = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        if not blocking:
            flags |= fcntl.LOCK_NB
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Remove a file or directory tree if present (chmod-ing read-only dirs as needed)."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
            return
    except FileNotFoundError:
        return

    def onerror(func: Any, name: str, exc_info: Any) -> None:
        exc = exc_info[1]
        if isinstance(exc, FileNotFoundError):
            return
        if isinstance(exc, PermissionError):
            parent = os.path.dirname(name)
            os.chmod(parent, 0o700)
            func(name)
            return
        raise exc

    shutil.rmtree(path, onerror=onerror)


def secure_join(root: Path, path: str, *, max_links: int = 40) -> Path:
    """`path` resolved inside `root` as if `root` were `/`: symlinks cannot climb out of it.

    Like Go's securejoin: each symlink met on the way is read and resolved relative to the
    root, `..` stops at the root. The last component need not exist.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        try:
            target = os.readlink(candidate)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                resolved.append(part)
                continue
            raise
        links += 1
        if links > max_links:
            raise OSError(errno.ELOOP, f"too many symlinks resolving {path!r}")
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return root.joinpath(*resolved)


def clean_relative(name: str) -> str:
    """Normalise a path from an archive to a relative form (`./a//b/` → `a/b`)."""
    cleaned = posixpath.normpath("/" + name).lstrip("/")
    return "" if cleaned == "." else cleaned
