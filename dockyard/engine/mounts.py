"""Overlayfs mounts of a container's root filesystem (mount(2) through libc, no helper binary)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import os
from pathlib import Path

MNT_DETACH = 2
_PAGE_LIMIT = 4000  # mount options must fit in one page
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class MountError(OSError):
    pass


def _mount(source: str, target: str, fstype: str, options: str) -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode(), 0, options.encode()) != 0:
        err = ctypes.get_errno()
        raise MountError(err, f"mount {fstype} on {target}: {os.strerror(err)}")


def _short_lowers(links_dir: Path, lowers: list[Path]) -> list[str]:
    """Short symlinks to each lower dir, so that many layers fit in the option page."""
    links_dir.mkdir(exist_ok=True)
    names = []
    for lower in lowers:
        name = hashlib.sha256(os.fsencode(lower)).hexdigest()[:20]
        link = links_dir / name
        if not link.is_symlink():
            with contextlib.suppress(FileExistsError):
                os.symlink(lower, link)
        names.append(os.fspath(link))
    return names


def mount_overlay(
    lowers: list[Path], upper: Path, work: Path, target: Path, *, links_dir: Path
) -> None:
    """Mount `lowers` (topmost first) with `upper`/`work` at `target`."""
    lower_paths = [os.fspath(p) for p in lowers]
    base = f"upperdir={upper},workdir={work}"
    if len(base) + sum(len(p) + 1 for p in lower_paths) + 40 > _PAGE_LIMIT:
        lower_paths = _short_lowers(links_dir, lowers)
    if len(base) + sum(len(p) + 1 for p in lower_paths) + 40 > _PAGE_LIMIT:
        raise MountError(errno.E2BIG, f"too many layers ({len(lowers)}) for one overlay mount")
    options = f"lowerdir={':'.join(lower_paths)},{base}"
    try:
        # metacopy must be off: an upper dir is turned into a layer and must hold whole files
        _mount("overlay", os.fspath(target), "overlay", options + ",index=off,metacopy=off")
    except MountError as exc:
        if exc.errno != errno.EINVAL:
            raise
        _mount("overlay", os.fspath(target), "overlay", options)


def bind_mount(source: Path, target: Path, *, readonly: bool = False) -> None:
    ms_bind, ms_rdonly, ms_remount = 4096, 1, 32
    if _libc.mount(os.fsencode(source), os.fsencode(target), None, ms_bind, None) != 0:
        err = ctypes.get_errno()
        raise MountError(err, f"bind mount {source} on {target}: {os.strerror(err)}")
    if readonly:
        flags = ms_bind | ms_remount | ms_rdonly
        _libc.mount(None, os.fsencode(target), None, flags, None)


def is_mounted(target: Path) -> bool:
    wanted = os.fspath(Path(target).absolute())
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 4 and _unescape(fields[4]) == wanted:
                    return True
    except OSError:
        return False
    return False


def mounts_under(prefix: Path) -> list[str]:
    base = os.fspath(Path(prefix).absolute())
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) > 4:
                point = _unescape(fields[4])
                if point == base or point.startswith(base + "/"):
                    found.append(point)
    return sorted(found, key=len, reverse=True)


def _unescape(text: str) -> str:
    return (text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")).replace(
        "\\134", "\\"
    )


def unmount(target: Path, *, lazy_fallback: bool = True) -> None:
    """Unmount `target` if mounted (detaching it when busy)."""
    path = os.fsencode(target)
    while is_mounted(target):
        if _libc.umount2(path, 0) == 0:
            continue
        err = ctypes.get_errno()
        if err == errno.EINVAL:
            return
        if err == errno.EBUSY and lazy_fallback:
            if _libc.umount2(path, MNT_DETACH) == 0:
                continue
            err = ctypes.get_errno()
        raise MountError(err, f"unmount {target}: {os.strerror(err)}")
