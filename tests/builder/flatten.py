"""Flatten a docker-archive (`docker save`, `dockyard save`) into one comparable filesystem view:
each path's type, mode, owner, content hash or link target, after applying every layer's
whiteouts (`.wh.NAME` deletes NAME, `.wh..wh..opq` hides what lower layers had in a directory).
"""

from __future__ import annotations

import hashlib
import json
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass(frozen=True)
class Entry:
    kind: str
    mode: int
    uid: int
    gid: int
    content: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.mode:04o} {self.uid}:{self.gid} {self.content}".rstrip()


@dataclass
class SavedImage:
    config: dict[str, Any]
    files: dict[str, Entry]


def _normal(name: str) -> str:
    parts = [part for part in name.split("/") if part not in ("", ".")]
    return "/".join(parts)


def _drop(files: dict[str, Entry], path: str, *, keep_self: bool = False) -> None:
    prefix = path + "/"
    for name in [name for name in files if name.startswith(prefix)]:
        del files[name]
    if not keep_self:
        files.pop(path, None)


def _entry(layer: tarfile.TarFile, member: tarfile.TarInfo, files: dict[str, Entry]) -> Entry:
    mode = stat.S_IMODE(member.mode)
    if member.isdir():
        return Entry("dir", mode, member.uid, member.gid)
    if member.issym():
        return Entry("symlink", 0o777, member.uid, member.gid, member.linkname)
    if member.islnk():
        target = files.get(_normal(member.linkname))
        content = target.content if target is not None else f"dangling hardlink {member.linkname}"
        return Entry("file", mode, member.uid, member.gid, content)
    if member.isreg():
        handle = layer.extractfile(member)
        assert handle is not None
        digest = hashlib.sha256(handle.read()).hexdigest()
        return Entry("file", mode, member.uid, member.gid, digest)
    if member.ischr() or member.isblk():
        kind = "char" if member.ischr() else "block"
        return Entry(kind, mode, member.uid, member.gid, f"{member.devmajor},{member.devminor}")
    return Entry("fifo", mode, member.uid, member.gid)


def apply_layer(files: dict[str, Entry], layer: tarfile.TarFile) -> None:
    """Apply one layer tar on top of `files`, in place."""
    members = layer.getmembers()
    for member in members:
        path = _normal(member.name)
        parent, _, base = path.rpartition("/")
        if base == OPAQUE:
            _drop(files, parent, keep_self=True)
        elif base.startswith(WHITEOUT):
            _drop(files, f"{parent}/{base[len(WHITEOUT) :]}".lstrip("/"))
    for member in members:
        path = _normal(member.name)
        if not path or path.rpartition("/")[2].startswith(WHITEOUT):
            continue
        entry = _entry(layer, member, files)
        if entry.kind != "dir":
            _drop(files, path, keep_self=True)
        files[path] = entry


def read_saved(archive: Path) -> SavedImage:
    """The single image in a docker-archive tarball, flattened."""
    with tarfile.open(archive) as outer:
        manifest = json.load(_member(outer, "manifest.json"))
        assert len(manifest) == 1, f"expected one image in {archive}, got {len(manifest)}"
        config = json.load(_member(outer, manifest[0]["Config"]))
        files: dict[str, Entry] = {}
        for name in manifest[0]["Layers"]:
            with tarfile.open(fileobj=_member(outer, name), mode="r:*") as layer:
                apply_layer(files, layer)
    return SavedImage(config, files)


def _member(archive: tarfile.TarFile, name: str) -> IO[bytes]:
    handle = archive.extractfile(name)
    assert handle is not None, f"{name} is not a file in the archive"
    return handle


def listing(files: dict[str, Entry]) -> list[str]:
    """One line per path, sorted: what the tests compare and show on a mismatch."""
    return [f"/{path} {entry}" for path, entry in sorted(files.items())]
