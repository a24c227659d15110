"""The hub's HTTP application: token service, search API, JSON API, web pages."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from dockyard.hub import api
from dockyard.hub.context import Hub
from dockyard.hub.search_api import search
from dockyard.hub.token_service import get_token, post_token


def hub_app(hub: Hub, extra_routes: list[Route] | None = None) -> Starlette:
    routes = [
        Route("/token", get_token, methods=["GET"]),
        Route("/token", post_token, methods=["POST"]),
        Route("/v1/search", search, methods=["GET"]),
        *api.routes,
        *(extra_routes or []),
    ]
    app = Starlette(routes=routes)
    app.state.hub = hub
    return app
