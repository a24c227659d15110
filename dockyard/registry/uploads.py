"""Blob uploads: monolithic, POST+PUT, chunked PATCH, status, cancel, resume, and mounts."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

from dockyard.oci.digest import Digest
from dockyard.registry.auth import PULL, Scope
from dockyard.registry.blobs import parse_digest
from dockyard.registry.context import Registry
from dockyard.registry.errors import (
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    RegistryError,
)
from dockyard.registry.hashers import RunningHash
from dockyard.registry.http import Request, Send, respond

_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?$")


def _location(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def _progress_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    return {
        "location": _location(name, upload_id),
        "range": f"0-{max(size - 1, 0)}",
        "docker-upload-uuid": upload_id,
    }


async def _created(send: Send, name: str, digest: Digest) -> None:
    await respond(
        send,
        201,
        {"location": f"/v2/{name}/blobs/{digest}", "docker-content-digest": str(digest)},
    )


async def start_upload(registry: Registry, request: Request, send: Send, name: str) -> None:
    """POST /v2/<name>/blobs/uploads/ in all its forms."""
    mount = request.query("mount")
    if mount is not None and await _mount(registry, request, name, parse_digest(mount)):
        await _created(send, name, parse_digest(mount))
        return
    digest_param = request.query("digest")
    if digest_param is not None:
        digest = parse_digest(digest_param)
        upload_id = str(uuid.uuid4())
        await registry.store.create_upload(upload_id)
        try:
            running = RunningHash(0, digest.hasher())
            await registry.store.append(upload_id, _hashed(request.chunks(), running))
            await _finish(registry, name, upload_id, digest, running)
        finally:
            await registry.store.abort_upload(upload_id)
        await _created(send, name, digest)
        return
    upload_id = str(uuid.uuid4())
    await registry.store.create_upload(upload_id)
    await registry.meta.create_upload(upload_id, name)
    await respond(send, 202, _progress_headers(name, upload_id, 0))


async def _mount(registry: Registry, request: Request, name: str, digest: Digest) -> bool:
    """Link a blob from another repository the client may read, instead of uploading it."""
    source = request.query("from")
    if source is not None:
        candidates = [source]
    elif registry.automatic_mount:
        candidates = await registry.meta.repositories_with_blob(digest)
    else:
        return False
    for candidate in candidates:
        try:
            await registry.authorizer.authorize(request, Scope(candidate, frozenset({PULL})))
        except RegistryError:
            continue
        size = await registry.meta.blob_size(candidate, digest)
        if size is not None and await registry.store.stat(digest) is not None:
            await registry.meta.link_blob(name, digest, size)
            return True
    return False


async def _hashed(chunks: AsyncIterator[bytes], running: RunningHash) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        running.hasher.update(chunk)
        if running.offset >= 0:
            running.offset += len(chunk)
        yield chunk


async def _session(registry: Registry, name: str, upload_id: str) -> int:
    """The upload's current size, checking it belongs to repository `name`."""
    try:
        uuid.UUID(upload_id)
    except ValueError:
        raise BlobUploadUnknown("upload unknown to registry") from None
    owner = await registry.meta.upload_repository(upload_id)
    size = await registry.store.upload_size(upload_id) if owner == name else None
    if size is None:
        raise BlobUploadUnknown("upload unknown to registry", detail={"uuid": upload_id})
    return size


async def upload_status(
    registry: Registry, request: Request, send: Send, name: str, upload_id: str
) -> None:
    size = await _session(registry, name, upload_id)
    await respond(send, 204, _progress_headers(name, upload_id, size))


async def _append(registry: Registry, request: Request, upload_id: str, size: int) -> int:
    running = registry.hashers.take(upload_id, size)
    try:
        return await registry.store.append(upload_id, _hashed(request.chunks(), running))
    finally:
        registry.hashers.keep(upload_id, running)


def _check_content_range(request: Request, name: str, upload_id: str, size: int) -> None:
    """A chunk that names its range must continue the upload exactly where it stands."""
    content_range = request.headers.get("content-range")
    if content_range is None:
        return
    match = _CONTENT_RANGE.match(content_range.strip())
    if not match:
        raise BlobUploadInvalid(f"malformed Content-Range {content_range[:80]!r}")
    start, end = int(match[1]), int(match[2])
    length = request.content_length
    if start != size or end < start or (length is not None and length != end - start + 1):
        raise RangeInvalid(
            f"chunk {start}-{end} does not continue the upload at offset {size}",
            headers=_progress_headers(name, upload_id, size),
        )


async def patch_upload(
    registry: Registry, request: Request, send: Send, name: str, upload_id: str
) -> None:
    size = await _session(registry, name, upload_id)
    _check_content_range(request, name, upload_id, size)
    size = await _append(registry, request, upload_id, size)
    await respond(send, 202, _progress_headers(name, upload_id, size))


async def finish_upload(
    registry: Registry, request: Request, send: Send, name: str, upload_id: str
) -> None:
    size = await _session(registry, name, upload_id)
    digest_param = request.query("digest")
    if digest_param is None:
        raise DigestInvalid("the digest query parameter is required to complete an upload")
    digest = parse_digest(digest_param)
    _check_content_range(request, name, upload_id, size)
    if request.content_length or request.headers.get("transfer-encoding"):
        await _append(registry, request, upload_id, size)
    running = registry.hashers.take(upload_id, await registry.store.upload_size(upload_id) or 0)
    try:
        await _finish(registry, name, upload_id, digest, running, session=True)
    except DigestInvalid:
        await cancel(registry, upload_id)
        raise
    await _created(send, name, digest)


async def _finish(
    registry: Registry,
    name: str,
    upload_id: str,
    digest: Digest,
    running: RunningHash,
    session: bool = False,
) -> None:
    """Verify the upload against `digest` and make it the blob (ending its session, if any)."""
    size = await registry.store.upload_size(upload_id) or 0
    if running.offset == size and running.hasher.name == digest.algorithm:
        actual = running.hasher.hexdigest()
    else:
        hasher = digest.hasher()
        async for chunk in registry.store.read_upload(upload_id):
            hasher.update(chunk)
        actual = hasher.hexdigest()
    if actual != digest.encoded:
        raise DigestInvalid(
            "uploaded content does not match the digest",
            detail={"expected": str(digest), "actual": f"{digest.algorithm}:{actual}"},
        )
    async with registry.store.commit_guard():
        await registry.store.commit_upload(upload_id, digest)
        await registry.meta.link_blob(name, digest, size, upload_id if session else None)


async def cancel(registry: Registry, upload_id: str) -> None:
    registry.hashers.forget(upload_id)
    await registry.store.abort_upload(upload_id)
    await registry.meta.delete_upload(upload_id)


async def cancel_upload(
    registry: Registry, request: Request, send: Send, name: str, upload_id: str
) -> None:
    await _session(registry, name, upload_id)
    await cancel(registry, upload_id)
    await respond(send, 204)
