"""The registry's ASGI application: routes `/v2/…` to handlers after asking the authorizer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from dockyard.oci.names import is_repository_name
from dockyard.registry import blobs, discovery, manifests, uploads
from dockyard.registry.auth import DELETE, PULL, PUSH, Scope
from dockyard.registry.context import Registry
from dockyard.registry.errors import (
    NameInvalid,
    NotFound,
    RegistryError,
    ServerError,
    Unsupported,
)
from dockyard.registry.http import (
    ClientDisconnected,
    Receive,
    Request,
    Send,
    respond,
    respond_error,
)
from dockyard.registry.http import Scope as AsgiScope

log = logging.getLogger("dockyard.registry")

Handler = Callable[[Registry, Request, Send, str, str], Awaitable[None]]

_READ = frozenset({PULL})
_WRITE = frozenset({PULL, PUSH})
_DELETE = frozenset({DELETE})

# resource suffix → method → (handler, actions it needs)
_ROUTES: dict[str, dict[str, tuple[Handler, frozenset[str]]]] = {
    "manifests": {
        "GET": (manifests.get_manifest, _READ),
        "HEAD": (manifests.get_manifest, _READ),
        "PUT": (manifests.put_manifest, _WRITE),
        "DELETE": (manifests.delete_manifest, _DELETE),
    },
    "blobs": {
        "GET": (blobs.get_blob, _READ),
        "HEAD": (blobs.get_blob, _READ),
        "DELETE": (blobs.delete_blob, _DELETE),
    },
    "blobs/uploads": {
        "GET": (uploads.upload_status, _WRITE),
        "PATCH": (uploads.patch_upload, _WRITE),
        "PUT": (uploads.finish_upload, _WRITE),
        "DELETE": (uploads.cancel_upload, _WRITE),
    },
    "referrers": {"GET": (discovery.referrers, _READ)},
}


def _split(path: str) -> tuple[str, str, str] | None:
    """`/v2/<name>/<resource>/<argument>` → (name, resource, argument)."""
    head, _, argument = path[4:].rpartition("/")
    if head.endswith("/blobs/uploads"):
        return head[:-14], "blobs/uploads", argument
    for resource in ("manifests", "blobs", "referrers"):
        if head.endswith("/" + resource):
            return head[: -len(resource) - 1], resource, argument
    if path.endswith("/tags/list"):
        return path[4:-10], "tags/list", ""
    return None


class RegistryApp:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._valid_names: set[str] = set()

    def _check_name(self, name: str) -> None:
        if name in self._valid_names:
            return
        if not is_repository_name(name):
            raise NameInvalid("invalid repository name", detail={"name": name[:300]})
        if len(self._valid_names) > 50_000:
            self._valid_names.clear()
        self._valid_names.add(name)

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        started = False

        async def tracked_send(message: dict) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._dispatch(request, tracked_send)
        except RegistryError as error:
            if not started:
                await respond_error(send, error, head=request.method == "HEAD")
        except ClientDisconnected:
            log.info("client disconnected method=%s path=%s", request.method, request.path)
        except Exception:
            log.exception("request failed method=%s path=%s", request.method, request.path)
            if not started:
                await respond_error(send, ServerError("internal error; see the server log"))

    async def _dispatch(self, request: Request, send: Send) -> None:
        path, method = request.path, request.method
        authorize = self.registry.authorizer.authorize
        if path in ("/v2/", "/v2"):
            await authorize(request, None)
            await respond(send, 200, {"content-type": "application/json"}, b"{}")
            return
        if path == "/v2/_catalog":
            if method != "GET":
                raise Unsupported("the catalog only answers GET")
            await authorize(request, Scope(None, _READ))
            await discovery.catalog(self.registry, request, send)
            return
        parts = _split(path) if path.startswith("/v2/") else None
        if parts is None:
            raise NotFound("no such endpoint", detail={"path": path[:300]})
        name, resource, argument = parts
        self._check_name(name)
        name = self.registry.canonical_name(name)
        if resource == "tags/list":
            if method != "GET":
                raise Unsupported("tags/list only answers GET")
            await authorize(request, Scope(name, _READ))
            await discovery.list_tags(self.registry, request, send, name)
            return
        if resource == "blobs/uploads" and argument == "":
            if method != "POST":
                raise Unsupported("start an upload with POST")
            await authorize(request, Scope(name, _WRITE))
            await uploads.start_upload(self.registry, request, send, name)
            return
        route = _ROUTES[resource].get(method)
        if route is None:
            raise Unsupported(f"{method} is not supported on {resource}")
        handler, actions = route
        await authorize(request, Scope(name, actions))
        await handler(self.registry, request, send, name, argument)
