"""Content checksums of COPY/ADD sources, with file hashes cached by their stat data.

A file's sha256 is kept under ROOT/builder/checksums/ keyed by (path, size, mtime_ns, inode),
so a rebuild reads only the files that changed. The checksum of a source set covers every
entry's relative name, type, permission bits and content (or link target).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from dockyard.builder.sources import Entry
from dockyard.engine.fsutil import write_atomic

CHUNK = 1 << 20


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ChecksumCache:
    """File digests keyed by stat data; `path` None keeps them in memory only."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.table: dict[str, list[object]] = {}
        self.dirty = False
        if path is not None:
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(path.read_bytes())
                if isinstance(loaded, dict):
                    self.table = loaded

    def file_digest(self, path: str, st: os.stat_result) -> str:
        signature = [st.st_size, st.st_mtime_ns, st.st_ino]
        known = self.table.get(path)
        if known is not None and known[:3] == signature:
            return str(known[3])
        digest = file_sha256(path)
        self.table[path] = [*signature, digest]
        self.dirty = True
        return digest

    def checksum(self, entries: Iterable[Entry]) -> str:
        """One digest over a set of entries (names relative to their source)."""
        total = hashlib.sha256()
        for entry in entries:
            mode = entry.st.st_mode
            perms = stat.S_IMODE(mode)
            if stat.S_ISREG(mode):
                line = f"f {entry.rel} {perms:o} {self.file_digest(entry.path, entry.st)}"
            elif stat.S_ISDIR(mode):
                line = f"d {entry.rel} {perms:o}"
            elif stat.S_ISLNK(mode):
                line = f"l {entry.rel} {os.readlink(entry.path)}"
            else:
                line = f"o {entry.rel} {mode:o}"
            total.update(line.encode("utf-8", "surrogateescape") + b"\0")
        return total.hexdigest()

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            write_atomic(self.path, json.dumps(self.table, separators=(",", ":")).encode())
        self.dirty = False


def cache_file(store_root: Path, context_root: Path) -> Path:
    key = hashlib.sha256(os.fsencode(os.path.realpath(context_root))).hexdigest()[:32]
    return store_root / "builder" / "checksums" / f"{key}.json"
