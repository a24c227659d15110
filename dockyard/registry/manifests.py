"""Manifest GET, HEAD, PUT and DELETE, by tag and by digest."""

from __future__ import annotations

from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest, InvalidDigest, is_digest
from dockyard.oci.manifest import MAX_MANIFEST_SIZE, InvalidManifest, parse_manifest
from dockyard.oci.names import is_tag
from dockyard.registry.context import Registry
from dockyard.registry.errors import (
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
)
from dockyard.registry.http import API_VERSION, Request, Send, respond
from dockyard.registry.metadata import ManifestRecord, MissingReferences


def _reference(reference: str, writing: bool = False) -> tuple[str, bool]:
    """The reference normalised, and whether it is a digest. An invalid tag cannot name
    anything: reading it finds nothing, writing it is refused."""
    if is_digest(reference):
        try:
            return str(Digest.parse(reference)), True
        except InvalidDigest as exc:
            raise DigestInvalid(str(exc), detail={"digest": reference[:200]}) from None
    if not is_tag(reference):
        if writing:
            raise ManifestInvalid("invalid tag", detail={"tag": reference[:200]})
        raise ManifestUnknown("manifest unknown", detail={"tag": reference[:200]})
    return reference, False


async def _resolve(registry: Registry, name: str, reference: str) -> ManifestRecord:
    cache = registry.cache
    cache.refresh()
    record = cache.resolution(name, reference)
    if record is False:
        stamp = cache.stamp()
        normalised, by_digest = _reference(reference)
        record = await registry.meta.resolve(name, normalised, by_digest)
        cache.remember_resolution(name, reference, record, stamp)
    if record is None:
        raise ManifestUnknown("manifest unknown", detail={"name": name, "reference": reference})
    return record  # type: ignore[return-value]


async def _content(registry: Registry, record: ManifestRecord) -> bytes:
    data = registry.cache.content(record.digest)
    if data is None:
        data = await registry.store.get_bytes(Digest.parse(record.digest))
        if data is None:
            raise ManifestUnknown("manifest content is missing", detail={"digest": record.digest})
        registry.cache.remember_content(record.digest, data)
    return data


async def get_manifest(
    registry: Registry, request: Request, send: Send, name: str, reference: str
) -> None:
    record = await _resolve(registry, name, reference)
    data = await _content(registry, record)
    headers = [
        API_VERSION,
        (b"content-type", record.media_type.encode()),
        (b"docker-content-digest", record.digest.encode()),
        (b"etag", f'"{record.digest}"'.encode()),
        (b"content-length", str(len(data)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if request.method == "HEAD":
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.body", "body": data})
    if registry.on_pull is not None and (
        record.media_type in mt.INDEXES or not is_digest(reference)
    ):
        registry.on_pull(name)


async def put_manifest(
    registry: Registry, request: Request, send: Send, name: str, reference: str
) -> None:
    normalised, by_digest = _reference(reference, writing=True)
    data = await request.body(MAX_MANIFEST_SIZE)
    algorithm = normalised.split(":")[0] if by_digest else "sha256"
    digest = Digest.of(data, algorithm)
    if by_digest and str(digest) != normalised:
        raise DigestInvalid(
            "manifest content does not match the digest in the URL",
            detail={"expected": normalised, "actual": str(digest)},
        )
    try:
        manifest = parse_manifest(data, request.headers.get("content-type"))
    except InvalidManifest as exc:
        raise ManifestInvalid(str(exc)) from None
    tags = [] if by_digest else [normalised]
    for tag in request.query_all("tag"):
        if not is_tag(tag):
            raise ManifestInvalid("invalid tag", detail={"tag": tag[:200]})
        tags.append(tag)
    try:
        async with registry.store.commit_guard():
            await registry.store.put_bytes(digest, data)
            await registry.meta.put_manifest(name, digest, len(data), manifest, tags)
    except MissingReferences as missing:
        kind = "blobs" if missing.blobs else "manifests"
        raise ManifestBlobUnknown(
            f"manifest references {kind} unknown to the repository",
            detail={"blobs": missing.blobs, "manifests": missing.manifests},
        ) from None
    registry.cache.remember_content(str(digest), data)
    if tags and registry.on_push is not None:
        await registry.on_push(name, tags, str(digest))
    headers = {"location": f"/v2/{name}/manifests/{digest}", "docker-content-digest": str(digest)}
    if manifest.subject is not None:
        headers["oci-subject"] = str(manifest.subject.digest)
    await respond(send, 201, headers)


async def delete_manifest(
    registry: Registry, request: Request, send: Send, name: str, reference: str
) -> None:
    normalised, by_digest = _reference(reference)
    if by_digest:
        deleted = await registry.meta.delete_manifest(name, normalised)
    else:
        deleted = await registry.meta.delete_tag(name, normalised)
    if not deleted:
        raise ManifestUnknown("manifest unknown", detail={"name": name, "reference": reference})
    await respond(send, 202)
