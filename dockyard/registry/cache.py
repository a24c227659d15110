"""In-process caches for the manifest hot path: immutable content, and tag resolutions that
stay valid until the cross-process change stamp moves."""

from __future__ import annotations

from collections import OrderedDict

from dockyard.registry.changes import ChangeStamp
from dockyard.registry.metadata import ManifestRecord


class ManifestCache:
    def __init__(self, changes: ChangeStamp, max_bytes: int = 64 << 20) -> None:
        self.changes = changes
        self.max_bytes = max_bytes
        self._content: OrderedDict[str, bytes] = OrderedDict()
        self._content_bytes = 0
        self._resolved: dict[tuple[str, str], ManifestRecord | None] = {}
        self._stamp = changes.current()

    def refresh(self) -> None:
        """Forget resolutions if any process changed metadata since they were read."""
        stamp = self.changes.current()
        if stamp != self._stamp:
            self._resolved.clear()
            self._stamp = stamp

    def resolution(self, name: str, reference: str) -> ManifestRecord | bool | None:
        """The cached record, None for a cached miss, False when not cached."""
        return self._resolved.get((name, reference), False)

    def remember_resolution(
        self, name: str, reference: str, record: ManifestRecord | None, stamp: tuple[int, int]
    ) -> None:
        if stamp != self._stamp:
            return
        if len(self._resolved) > 100_000:
            self._resolved.clear()
        self._resolved[(name, reference)] = record

    def stamp(self) -> tuple[int, int]:
        return self._stamp

    def content(self, digest: str) -> bytes | None:
        data = self._content.get(digest)
        if data is not None:
            self._content.move_to_end(digest)
        return data

    def remember_content(self, digest: str, data: bytes) -> None:
        if digest in self._content or len(data) > self.max_bytes // 4:
            return
        self._content[digest] = data
        self._content_bytes += len(data)
        while self._content_bytes > self.max_bytes:
            _, evicted = self._content.popitem(last=False)
            self._content_bytes -= len(evicted)
