"""The hub's HTTP application: token service, search API, JSON API, web pages."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from dockyard.hub import api
from dockyard.hub.context import Hub
from dockyard.hub.search_api import search
from dockyard.hub.token_service import get_token, post_token


def hub_app(
    hub: Hub,
    extra_routes: Sequence[BaseRoute] | None = None,
    middleware: Sequence[Middleware] | None = None,
    api_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """`api_routes` go before the hub API's catch-all repository paths, `extra_routes` after."""
    routes: list[BaseRoute] = [
        Route("/token", get_token, methods=["GET"]),
        Route("/token", post_token, methods=["POST"]),
        Route("/v1/search", search, methods=["GET"]),
        *api_routes,
        *api.routes,
        *(extra_routes or []),
    ]
    app = Starlette(routes=routes, middleware=list(middleware or []))
    app.state.hub = hub
    return app
