"""Running digests of uploads in progress, so finishing one need not re-read it.

A hasher is trusted only when the bytes it has seen equal the upload's size on disk; after a
restart, or when another process took a chunk, the upload is re-hashed from storage instead.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class RunningHash:
    offset: int
    hasher: hashlib._Hash


class UploadHashers:
    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._running: OrderedDict[str, RunningHash] = OrderedDict()

    def take(self, upload_id: str, offset: int) -> RunningHash:
        """The running hash at `offset`, or a fresh one marked unusable (offset -1)."""
        running = self._running.pop(upload_id, None)
        if running is not None and running.offset == offset:
            return running
        if offset == 0:
            return RunningHash(0, hashlib.sha256())
        return RunningHash(-1, hashlib.sha256())

    def keep(self, upload_id: str, running: RunningHash) -> None:
        if running.offset < 0:
            return
        self._running[upload_id] = running
        while len(self._running) > self.capacity:
            self._running.popitem(last=False)

    def forget(self, upload_id: str) -> None:
        self._running.pop(upload_id, None)
