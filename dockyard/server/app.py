"""The ASGI application `dockyard serve` runs: opens storage and metadata, then routes."""

from __future__ import annotations

import logging
from typing import Any

from dockyard.db.engine import open_engine
from dockyard.registry.app import RegistryApp
from dockyard.registry.auth import Authorizer, HtpasswdAccess, OpenAccess
from dockyard.registry.cache import ManifestCache
from dockyard.registry.changes import ChangeStamp
from dockyard.registry.context import Registry
from dockyard.registry.errors import NotFound
from dockyard.registry.http import Receive, Send, respond, respond_error
from dockyard.registry.metadata import Metadata
from dockyard.server.config import Settings, load_settings
from dockyard.storage.filesystem import FilesystemStore

log = logging.getLogger("dockyard.server")


def make_authorizer(settings: Settings) -> Authorizer:
    if settings.auth == "htpasswd":
        assert settings.htpasswd is not None
        return HtpasswdAccess(settings.htpasswd)
    return OpenAccess()


def open_registry(settings: Settings) -> Registry:
    """Every part of the registry for one process; call inside its event loop."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    changes = ChangeStamp(settings.data_dir / "changes")
    return Registry(
        store=FilesystemStore(settings.data_dir),
        meta=Metadata(open_engine(settings.db_url), changes),
        authorizer=make_authorizer(settings),
        cache=ManifestCache(changes),
    )


class DockyardApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry: RegistryApp | None = None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"].startswith("/v2") and self.registry is not None:
                await self.registry(scope, receive, send)
            elif scope["path"] == "/healthz":
                await respond(send, 200, {"content-type": "text/plain"}, b"ok\n")
            else:
                await respond_error(send, NotFound("no such page"))
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.registry = RegistryApp(open_registry(self.settings))
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.registry is not None:
                    await self.registry.registry.meta.engine.dispose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def from_environment() -> DockyardApp:
    """Factory for worker processes: settings arrive as DOCKYARD_* variables."""
    return DockyardApp(load_settings(None, {}))
