"""Finding images: the explore page, search, and a user's or organisation's page."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.hub.names import OFFICIAL
from dockyard.hub.web.pages import NotFound, hub_of, page, principal_of, render, user_of

EXPLORE_LIMIT = 60
PAGE_SIZE = 25


def _page_number(request: Request) -> int:
    try:
        return max(1, min(10_000, int(request.query_params.get("page", "1"))))
    except ValueError:
        return 1


@page
async def explore(request: Request) -> Response:
    """Public repositories, best first (official, stars, pulls)."""
    found = await hub_of(request).repositories.explore(principal_of(request), EXPLORE_LIMIT)
    return render(
        request,
        "explore.html",
        repositories=[info for info in found if not info.is_private],
    )


@page
async def search(request: Request) -> Response:
    query = request.query_params.get("q", "").strip()[:100]
    number = _page_number(request)
    total, found = await hub_of(request).repositories.search(
        principal_of(request), query, PAGE_SIZE, (number - 1) * PAGE_SIZE
    )
    pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
    return render(
        request,
        "search.html",
        repositories=found,
        total=total,
        page_number=number,
        pages=pages,
        search_query=query,
    )


@page
async def namespace(request: Request) -> Response:
    hub = hub_of(request)
    name = request.path_params["namespace"]
    kind = "official" if name == OFFICIAL else await hub.accounts.namespace_kind(name)
    if kind is None:
        raise NotFound()
    found = await hub.repositories.in_namespace(principal_of(request), name)
    user = user_of(request)
    can_create = user is not None and (
        user.username == name
        or user.is_admin
        or (kind == "org" and await hub.accounts.membership(name, user) is not None)
    )
    return render(
        request,
        "namespace.html",
        namespace=name,
        kind=kind,
        repositories=found,
        can_create=can_create,
    )


routes = [
    Route("/", explore, methods=["GET"], name="home"),
    Route("/explore", explore, methods=["GET"]),
    Route("/search", search, methods=["GET"]),
    Route("/u/{namespace}", namespace, methods=["GET"]),
]
