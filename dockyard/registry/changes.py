"""A cross-process change counter: caches of mutable metadata are valid while it stands still.

Every metadata write appends one byte to a file; a reader compares (inode, size) from one
`stat` call. Appends are atomic, so no change is ever missed, whichever process made it.
"""

from __future__ import annotations

import os
from pathlib import Path

ROTATE_AT = 1 << 20


class ChangeStamp:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch(exist_ok=True)

    def current(self) -> tuple[int, int]:
        stat = os.stat(self.path)
        return stat.st_ino, stat.st_size

    def bump(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            os.write(fd, b".")
        finally:
            os.close(fd)
        if size >= ROTATE_AT:
            fresh = self.path.with_suffix(f".{os.getpid()}.new")
            fresh.write_bytes(b".")
            os.replace(fresh, self.path)
