"""The hub's web UI: server-rendered pages (Jinja2) made lively with htmx, no build step.

`web_routes()` and `web_middleware(hub)` are what `hub_app` mounts: the pages, the static
files (htmx and one stylesheet) and the session middleware (signed cookie, CSRF token).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from dockyard.hub.context import Hub
from dockyard.hub.web import account, browse, repository_pages, signin
from dockyard.hub.web.sessions import SessionMiddleware, load_secret

STATIC = Path(__file__).parent / "static"


def web_routes(repository_routes: Sequence[BaseRoute] = ()) -> list[BaseRoute]:
    """The pages; `repository_routes` (an upper layer's `/r/NAME/-/TAB` pages, see
    `pages.RepositoryTab`) go before the repository overview, which matches any `/r/` path."""
    return [
        *browse.routes,
        *signin.routes,
        *account.routes,
        *repository_pages.routes,
        *repository_routes,
        repository_pages.overview_route,
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]


def web_middleware(hub: Hub) -> list[Middleware]:
    """Sessions for the whole hub app: the JSON API honours a web session too."""
    secret = load_secret(hub.signer.certificate_path.parent)
    return [Middleware(SessionMiddleware, hub=hub, secret=secret)]
