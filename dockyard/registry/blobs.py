"""Blob GET, HEAD (with Range) and DELETE."""

from __future__ import annotations

import re

from dockyard.oci.digest import Digest, InvalidDigest
from dockyard.registry.context import Registry
from dockyard.registry.errors import BlobUnknown, DigestInvalid, RegistryError
from dockyard.registry.http import API_VERSION, Request, Send, encode_headers, respond

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(RegistryError):
    status = 416
    code = "BLOB_UNKNOWN"


def parse_digest(text: str) -> Digest:
    try:
        return Digest.parse(text)
    except InvalidDigest as exc:
        raise DigestInvalid(str(exc), detail={"digest": text[:200]}) from None


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The [start, end) a Range header asks for, None for the whole blob."""
    match = _RANGE.match(header.strip())
    if not match or "," in header:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        start, end = max(size - int(last), 0), size
    else:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    if start >= size or start >= end:
        raise RangeNotSatisfiable(
            f"range {header!r} is outside the blob's {size} bytes",
            headers={"content-range": f"bytes */{size}"},
        )
    return start, end


async def get_blob(registry: Registry, request: Request, send: Send, name: str, ref: str) -> None:
    digest = parse_digest(ref)
    size = await registry.meta.blob_size(name, digest)
    stored = await registry.store.stat(digest) if size is not None else None
    if stored is None:
        raise BlobUnknown("blob unknown to registry", detail={"digest": ref})
    headers = {
        "content-type": "application/octet-stream",
        "docker-content-digest": str(digest),
        "etag": f'"{digest}"',
        "accept-ranges": "bytes",
        "cache-control": "max-age=31536000",
    }
    start, end, status = 0, stored, 200
    wanted = request.headers.get("range")
    if wanted:
        selected = _byte_range(wanted, stored)
        if selected:
            start, end = selected
            status = 206
            headers["content-range"] = f"bytes {start}-{end - 1}/{stored}"
    if request.method == "HEAD":
        await registry.meta.touch_blob(digest)
        await respond(send, status, headers, content_length=end - start)
        return
    raw = [API_VERSION, *encode_headers(headers), (b"content-length", str(end - start).encode())]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    async for chunk in registry.store.read(digest, start, end):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def delete_blob(
    registry: Registry, request: Request, send: Send, name: str, ref: str
) -> None:
    digest = parse_digest(ref)
    if not await registry.meta.unlink_blob(name, digest):
        raise BlobUnknown("blob unknown to repository", detail={"digest": ref})
    await respond(send, 202)
