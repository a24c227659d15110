"""Blobs as files: `blobs/<algorithm>/<2 hex>/<encoded>`, uploads as files under `uploads/`."""

from __future__ import annotations

import asyncio
import fcntl
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from dockyard.oci.digest import Digest, InvalidDigest

READ_CHUNK = 4 * 1024 * 1024


class FilesystemStore:
    """A `BlobStore` on a local directory; renames make new content appear atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "blobs"
        self._uploads = root / "uploads"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._uploads.mkdir(parents=True, exist_ok=True)
        self._lock_path = root / "gc.lock"
        self._lock_path.touch(exist_ok=True)

    def _path(self, digest: Digest) -> Path:
        return self._blobs / digest.algorithm / digest.encoded[:2] / digest.encoded

    def _upload_path(self, upload_id: str) -> Path:
        uuid.UUID(upload_id)
        return self._uploads / upload_id

    async def stat(self, digest: Digest) -> int | None:
        try:
            return os.stat(self._path(digest)).st_size
        except FileNotFoundError:
            return None

    def local_path(self, digest: Digest) -> Path | None:
        return self._path(digest)

    async def read(
        self, digest: Digest, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        async for chunk in _read_file(self._path(digest), start, end):
            yield chunk

    async def get_bytes(self, digest: Digest) -> bytes | None:
        try:
            return self._path(digest).read_bytes()
        except FileNotFoundError:
            return None

    async def put_bytes(self, digest: Digest, data: bytes) -> None:
        path = self._path(digest)
        if path.exists():
            return
        tmp = self._uploads / f"{uuid.uuid4()}.tmp"
        tmp.write_bytes(data)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, path)

    async def delete(self, digest: Digest) -> None:
        with suppress(FileNotFoundError):
            os.unlink(self._path(digest))

    async def digests(self) -> AsyncIterator[tuple[Digest, float]]:
        for algorithm_dir in sorted(self._blobs.iterdir()):
            for prefix in sorted(algorithm_dir.iterdir()):
                for entry in os.scandir(prefix):
                    try:
                        digest = Digest.parse(f"{algorithm_dir.name}:{entry.name}")
                    except InvalidDigest:
                        continue
                    yield digest, entry.stat().st_mtime

    async def create_upload(self, upload_id: str) -> None:
        self._upload_path(upload_id).touch(exist_ok=False)

    async def upload_size(self, upload_id: str) -> int | None:
        try:
            return os.stat(self._upload_path(upload_id)).st_size
        except (FileNotFoundError, ValueError):
            return None

    async def append(self, upload_id: str, chunks: AsyncIterator[bytes]) -> int:
        fd = os.open(self._upload_path(upload_id), os.O_WRONLY | os.O_APPEND)
        try:
            async for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    async def read_upload(self, upload_id: str) -> AsyncIterator[bytes]:
        async for chunk in _read_file(self._upload_path(upload_id), 0, None):
            yield chunk

    async def commit_upload(self, upload_id: str, digest: Digest) -> None:
        source = self._upload_path(upload_id)
        target = self._path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)

    async def abort_upload(self, upload_id: str) -> None:
        with suppress(FileNotFoundError, ValueError):
            os.unlink(self._upload_path(upload_id))

    async def uploads(self) -> AsyncIterator[tuple[str, float]]:
        for entry in os.scandir(self._uploads):
            yield entry.name, entry.stat().st_mtime

    @asynccontextmanager
    async def commit_guard(self) -> AsyncIterator[None]:
        async with self._flock(fcntl.LOCK_SH):
            yield

    @asynccontextmanager
    async def sweep_guard(self) -> AsyncIterator[None]:
        async with self._flock(fcntl.LOCK_EX):
            yield

    @asynccontextmanager
    async def _flock(self, mode: int) -> AsyncIterator[None]:
        fd = os.open(self._lock_path, os.O_RDONLY)
        try:
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.01)
            yield
        finally:
            os.close(fd)


async def _read_file(path: Path, start: int, end: int | None) -> AsyncIterator[bytes]:
    with open(path, "rb", buffering=0) as handle:
        handle.seek(start)
        remaining = None if end is None else end - start
        while remaining is None or remaining > 0:
            size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
            chunk = await asyncio.to_thread(handle.read, size)
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
