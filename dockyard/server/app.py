"""The ASGI application `dockyard serve` runs: opens storage and metadata, then routes."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from starlette.applications import Starlette

from dockyard.builds import api as builds_api
from dockyard.builds import web as builds_web
from dockyard.builds.notify import Notifier
from dockyard.builds.queue import BuildQueue
from dockyard.builds.secrets import SecretBox
from dockyard.builds.service import Builds, LocalJobs
from dockyard.builds.sources import Sources
from dockyard.builds.workdirs import claim_free_work_dir
from dockyard.builds.worker import Worker
from dockyard.db.engine import open_engine
from dockyard.hub.access_tokens import AccessTokens
from dockyard.hub.accounts import Accounts
from dockyard.hub.app import hub_app
from dockyard.hub.context import Hub
from dockyard.hub.mail import Mailer
from dockyard.hub.names import canonical_repository
from dockyard.hub.permissions import Permissions
from dockyard.hub.registry_access import TokenAccess
from dockyard.hub.repositories import PullCounter, Repositories
from dockyard.hub.signing import TokenSigner
from dockyard.hub.web import web_middleware, web_routes
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
SHUTDOWN_SECONDS = 15.0  # time for build workers to remove their containers


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
        meta=Metadata(
            open_engine(settings.db_url),
            changes,
            repository_defaults={"is_private": settings.default_private},
        ),
        authorizer=make_authorizer(settings),
        cache=ManifestCache(changes),
    )


def open_hub(settings: Settings, registry: Registry) -> Hub:
    """The hub over `registry`, which from then on asks the hub's tokens who may do what."""
    engine = registry.meta.engine
    accounts = Accounts(engine)
    permissions = Permissions(engine)
    hub = Hub(
        registry=registry,
        accounts=accounts,
        tokens=AccessTokens(engine, accounts),
        permissions=permissions,
        repositories=Repositories(registry, permissions),
        signer=TokenSigner(settings.data_dir / "hub", settings.token_service),
        pulls=PullCounter(registry),
        public_url=settings.public_url,
        open_signup=settings.open_signup,
        mailer=Mailer(settings.smtp_host, settings.smtp_port, settings.smtp_from)
        if settings.smtp_host
        else None,
    )
    registry.authorizer = TokenAccess(hub, settings.token_service)
    registry.canonical_name = canonical_repository
    registry.on_pull = hub.pulls.count
    return hub


def open_builds(settings: Settings, hub: Hub) -> Builds:
    """Automated builds over the hub; pushes reach the registry at its own address."""
    engine = hub.registry.meta.engine
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    builds = Builds(
        hub=hub,
        sources=Sources(engine, SecretBox(settings.data_dir / "hub"), settings.allow_local_sources),
        queue=BuildQueue(engine, settings.build_namespace_limit),
        notifier=Notifier(engine),
        registry_url=f"http://{host}:{settings.port}",
        lease_seconds=settings.build_lease_seconds,
        worker_token=settings.worker_token,
    )
    hub.registry.on_push = builds.pushed
    return builds


class DockyardApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry: RegistryApp | None = None
        self.hub: Hub | None = None
        self.hub_app: Starlette | None = None
        self.builds: Builds | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"].startswith("/v2") and self.registry is not None:
                await self.registry(scope, receive, send)
            elif scope["path"] == "/healthz":
                await respond(send, 200, {"content-type": "text/plain"}, b"ok\n")
            elif self.hub_app is not None:
                await self.hub_app(scope, receive, send)
            else:
                await respond_error(send, NotFound("no such page"))
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    def _start(self) -> None:
        registry = open_registry(self.settings)
        if self.settings.auth == "hub":
            self.hub = open_hub(self.settings, registry)
            self.builds = open_builds(self.settings, self.hub)
            self.hub_app = hub_app(
                self.hub,
                web_routes(repository_routes=builds_web.routes),
                web_middleware(self.hub),
                api_routes=builds_api.routes,
            )
            self.hub_app.state.builds = self.builds
            builds_web.install(self.hub_app)
            self._tasks.append(asyncio.create_task(self.hub.pulls.run()))
            self._tasks.append(asyncio.create_task(self.builds.notifier.run()))
            for _ in range(self.settings.build_workers):
                root, _ = claim_free_work_dir(self.settings.data_dir / "builds")
                name = f"{socket.gethostname()}-{root.name}"
                worker = Worker(LocalJobs(self.builds, name), root, name=name)
                self._tasks.append(asyncio.create_task(worker.run_forever()))
            if self.hub.mailer is None:
                log.info("accounts are active at sign-up: no smtp_host, so no email confirmation")
        self.registry = RegistryApp(registry)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self._start()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in self._tasks:
                    task.cancel()
                if self._tasks:
                    await asyncio.wait(self._tasks, timeout=SHUTDOWN_SECONDS)
                if self.hub is not None:
                    await self.hub.pulls.flush()
                if self.registry is not None:
                    await self.registry.registry.meta.engine.dispose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def from_environment() -> DockyardApp:
    """Factory for worker processes: settings arrive as DOCKYARD_* variables."""
    return DockyardApp(load_settings(None, {}))
