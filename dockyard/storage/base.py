"""The small interface every blob driver implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

from dockyard.oci.digest import Digest


class BlobStore(Protocol):
    """Content-addressed blobs plus the in-progress uploads that become them."""

    async def stat(self, digest: Digest) -> int | None:
        """The blob's size, or None when it is absent."""

    def local_path(self, digest: Digest) -> Path | None:
        """A local file holding the blob, when the driver has one (for zero-copy serving)."""

    def read(self, digest: Digest, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The blob's bytes from `start` up to, not including, `end`."""

    async def get_bytes(self, digest: Digest) -> bytes | None: ...

    async def put_bytes(self, digest: Digest, data: bytes) -> None:
        """Store small content whose digest the caller has verified."""

    async def delete(self, digest: Digest) -> None: ...

    def digests(self) -> AsyncIterator[tuple[Digest, float]]:
        """Every stored blob with its modification time."""

    async def create_upload(self, upload_id: str) -> None: ...

    async def upload_size(self, upload_id: str) -> int | None:
        """Bytes received so far, or None for an unknown upload."""

    async def append(self, upload_id: str, chunks: AsyncIterator[bytes]) -> int:
        """Append chunks as they arrive; returns the new size. Bytes received before a
        disconnect stay appended, so the client can resume."""

    def read_upload(self, upload_id: str) -> AsyncIterator[bytes]: ...

    async def commit_upload(self, upload_id: str, digest: Digest) -> None:
        """Make the verified upload visible as the blob `digest`, atomically."""

    async def abort_upload(self, upload_id: str) -> None: ...

    def uploads(self) -> AsyncIterator[tuple[str, float]]:
        """Every in-progress upload with the time it last received bytes."""

    def commit_guard(self) -> AbstractAsyncContextManager[None]:
        """Held (shared) while content becomes visible; garbage collection takes it exclusive."""

    def sweep_guard(self) -> AbstractAsyncContextManager[None]: ...
