"""Writing COPY/ADD sources into a mounted root filesystem, as Docker's classic builder does.

The destination is resolved inside the root like a chroot would (`secure_join`); below it an
existing entry of another type is replaced, never written through, so nothing can land outside
the root. Files keep their mode and mtime; owners become `--chown`'s (root by default); new
parent directories are 0755 and owned by that identity; `--chmod` sets the permission bits.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dockyard.builder.errors import BuildError
from dockyard.builder.sources import Entry
from dockyard.engine.fsutil import secure_join


@dataclass(frozen=True, slots=True)
class Identity:
    uid: int
    gid: int


ROOT = Identity(0, 0)


def _lookup(rootfs: Path, database: str, name: str, what: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        with open(secure_join(rootfs, database), encoding="utf-8", errors="replace") as handle:
            text = handle.read(4 << 20)
    except OSError:
        text = ""
    for line in text.splitlines():
        entry = line.split(":")
        if len(entry) >= 3 and entry[0] == name and entry[2].isdigit():
            return int(entry[2])
    raise BuildError(f"unable to convert {what} {name!r} to an ID: no such {what} in {database}")


def resolve_chown(rootfs: Path, spec: str) -> Identity:
    """`--chown=user[:group]`: names from the image's /etc/passwd and /etc/group; a lone user
    also gives the group ID (as Docker does)."""
    user, _, group = spec.partition(":")
    if not user:
        raise BuildError(f"invalid --chown value {spec!r}")
    uid = _lookup(rootfs, "/etc/passwd", user, "user")
    gid = _lookup(rootfs, "/etc/group", group, "group") if group else uid
    return Identity(uid, gid)


def parse_chmod(spec: str) -> int:
    try:
        mode = int(spec, 8)
    except ValueError:
        raise BuildError(f"invalid --chmod value {spec!r}: use octal permission bits") from None
    if not 0 <= mode <= 0o7777:
        raise BuildError(f"invalid --chmod value {spec!r}")
    return mode


def is_dir_in_root(rootfs: Path, path: str) -> bool:
    return secure_join(rootfs, path).is_dir()


def ensure_dir(rootfs: Path, path: str, owner: Identity) -> Path:
    """`path` as a directory in the root (creating missing ones, 0755, owned by `owner`)."""
    resolved = rootfs
    for part in [p for p in path.split("/") if p not in ("", ".")]:
        resolved = secure_join(rootfs, os.fspath(resolved.relative_to(rootfs) / part))
        try:
            st = os.lstat(resolved)
        except FileNotFoundError:
            os.mkdir(resolved, 0o755)
            os.chmod(resolved, 0o755)
            os.lchown(resolved, owner.uid, owner.gid)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise BuildError(f"cannot create directory {path}: {part} is not a directory")
    return resolved


class Writer:
    """Puts source entries under one destination directory of the root."""

    def __init__(self, base: Path, owner: Identity | None, chmod: int | None) -> None:
        self.base = os.fspath(base)
        self.owner = owner
        self.chmod = chmod
        self.checked: set[str] = {self.base}

    def _chown(self, target: str, st: os.stat_result) -> None:
        owner = self.owner or Identity(st.st_uid, st.st_gid)
        os.lchown(target, owner.uid, owner.gid)

    @staticmethod
    def _clear(target: str, keep_dir: bool) -> bool:
        """Remove what is at `target` unless it is a directory we keep; True if one is kept."""
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(target)
            return False
        os.unlink(target)
        return False

    def put(self, entry: Entry, target: str) -> None:
        mode = entry.st.st_mode
        perms = self.chmod if self.chmod is not None else stat.S_IMODE(mode)
        times = (entry.st.st_atime_ns, entry.st.st_mtime_ns)
        if stat.S_ISDIR(mode):
            if target != self.base:
                self._parent(target)
            if not self._clear(target, keep_dir=True):
                os.mkdir(target, 0o700)
            self._chown(target, entry.st)
            os.chmod(target, perms)
            self.checked.add(target)
            return
        self._parent(target)
        self._clear(target, keep_dir=False)
        if stat.S_ISREG(mode):
            _copy_file(entry.path, target, perms)
            self._chown(target, entry.st)
            os.chmod(target, perms)
            os.utime(target, ns=times)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(entry.path), target)
            self._chown(target, entry.st)
            os.utime(target, ns=times, follow_symlinks=False)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(target, perms)
            self._chown(target, entry.st)
        else:
            raise BuildError(f"refusing to copy {entry.context_rel!r}: device nodes and sockets "
                             "are not copied")

    def _parent(self, target: str) -> None:
        """Make every directory between the base and `target` a real directory (a symlink or
        file in the way is replaced, so nothing is written through a link)."""
        parent = os.path.dirname(target)
        if parent in self.checked:
            return
        if parent != self.base and not parent.startswith(self.base + "/"):
            raise BuildError(f"refusing to write {target}: outside the destination")
        self._parent(parent)
        if not self._clear(parent, keep_dir=True):
            os.mkdir(parent, 0o755)
            owner = self.owner or ROOT
            os.lchown(parent, owner.uid, owner.gid)
        self.checked.add(parent)

    def finish_dirs(self, entries: Iterable[tuple[Entry, str]]) -> None:
        """Directory mtimes last, deepest first (writing their children changed them)."""
        for entry, target in sorted(entries, key=lambda e: e[1].count("/"), reverse=True):
            with contextlib.suppress(OSError):
                os.utime(target, ns=(entry.st.st_atime_ns, entry.st.st_mtime_ns))


def _copy_file(source: str, target: str, perms: int) -> None:
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dst = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            remaining = os.fstat(src).st_size
            while remaining > 0:
                try:
                    sent = os.copy_file_range(src, dst, remaining)
                except OSError:
                    sent = os.sendfile(dst, src, None, remaining)
                if sent == 0:
                    break
                remaining -= sent
        finally:
            os.close(dst)
    finally:
        os.close(src)


def copy_entries(entries: Iterable[Entry], writer: Writer, *, skip_root: bool) -> None:
    """Write a walked source (its root entry first) under `dest_dir`.

    With `skip_root` the root entry (a source directory) is not applied to `dest_dir`
    itself: Docker copies a directory's contents, not the directory.
    """
    dirs: list[tuple[Entry, str]] = []
    base = writer.base
    for entry in entries:
        if entry.rel == "":
            if skip_root:
                continue
            target = base
        else:
            target = base + "/" + entry.rel
        if ".." in posixpath.normpath(entry.rel).split("/"):
            raise BuildError(f"refusing to copy {entry.context_rel!r}: path leaves the destination")
        writer.put(entry, target)
        if stat.S_ISDIR(entry.st.st_mode):
            dirs.append((entry, target))
    writer.finish_dirs(dirs)
