"""Content discovery: tag lists, the catalog, and the referrers API."""

from __future__ import annotations

import json
from urllib.parse import quote

from dockyard.oci import mediatypes as mt
from dockyard.registry.blobs import parse_digest
from dockyard.registry.context import Registry
from dockyard.registry.errors import NameUnknown, RegistryError
from dockyard.registry.http import Request, Send, respond

MAX_PAGE = 10_000


class PaginationInvalid(RegistryError):
    code = "PAGINATION_NUMBER_INVALID"


def _page_size(request: Request) -> int | None:
    value = request.query("n")
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise PaginationInvalid("n must be a non-negative integer")
    return min(int(value), MAX_PAGE)


def _link(path: str, n: int, last: str) -> str:
    return f'<{path}?n={n}&last={quote(last, safe="")}>; rel="next"'


async def _json(
    send: Send,
    body: object,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> None:
    await respond(
        send, 200, {"content-type": content_type, **(headers or {})}, json.dumps(body).encode()
    )


async def list_tags(registry: Registry, request: Request, send: Send, name: str) -> None:
    n = _page_size(request)
    last = request.query("last")
    if n == 0:
        if not await registry.meta.repository_exists(name):
            raise NameUnknown("repository name not known to registry", detail={"name": name})
        await _json(send, {"name": name, "tags": []})
        return
    tags = await registry.meta.tags(name, None if n is None else n + 1, last)
    if tags is None:
        raise NameUnknown("repository name not known to registry", detail={"name": name})
    headers = {}
    if n is not None and len(tags) > n:
        tags = tags[:n]
        headers["link"] = _link(f"/v2/{name}/tags/list", n, tags[-1])
    await _json(send, {"name": name, "tags": tags}, headers)


async def catalog(registry: Registry, request: Request, send: Send) -> None:
    n = _page_size(request)
    if n == 0:
        await _json(send, {"repositories": []})
        return
    names = await registry.meta.catalog(None if n is None else n + 1, request.query("last"))
    names = await registry.authorizer.visible(request, names)
    headers = {}
    if n is not None and len(names) > n:
        names = names[:n]
        headers["link"] = _link("/v2/_catalog", n, names[-1])
    await _json(send, {"repositories": names}, headers)


async def referrers(
    registry: Registry, request: Request, send: Send, name: str, reference: str
) -> None:
    subject = parse_digest(reference)
    artifact_type = request.query("artifactType")
    found = await registry.meta.referrers(name, subject)
    headers = {}
    if artifact_type is not None:
        found = [r for r in found if r.artifact_type == artifact_type]
        headers["oci-filters-applied"] = "artifactType"
    descriptors = []
    for referrer in found:
        descriptor: dict[str, object] = {
            "mediaType": referrer.media_type,
            "digest": referrer.digest,
            "size": referrer.size,
        }
        if referrer.artifact_type:
            descriptor["artifactType"] = referrer.artifact_type
        if referrer.annotations:
            descriptor["annotations"] = referrer.annotations
        descriptors.append(descriptor)
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": descriptors}
    await _json(send, index, headers, content_type=mt.OCI_INDEX)
