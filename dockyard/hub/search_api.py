"""`GET /v1/search`, the API `docker search HOST/term` calls."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from dockyard.hub.context import BadCredentials, Hub, RateLimited
from dockyard.hub.permissions import ANONYMOUS


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(value))) if value else default
    except ValueError:
        return default


async def search(request: Request) -> JSONResponse:
    hub: Hub = request.app.state.hub
    try:
        principal = await hub.principal_from_header(
            request.headers.get("authorization"),
            request.client.host if request.client else "unknown",
        )
    except (BadCredentials, RateLimited):
        principal = ANONYMOUS
    query = request.query_params.get("q", "")
    page_size = _int(request.query_params.get("n"), 25, 1, 100)
    page = _int(request.query_params.get("page"), 1, 1, 10_000)
    total, found = await hub.repositories.search(
        principal, query, page_size, (page - 1) * page_size
    )
    return JSONResponse(
        {
            "num_results": total,
            "num_pages": (total + page_size - 1) // page_size,
            "page": page,
            "page_size": page_size,
            "query": query,
            "results": [
                {
                    "name": info.display_name,
                    "description": info.description,
                    "star_count": info.star_count,
                    "pull_count": info.pull_count,
                    "is_official": info.is_official,
                    "is_automated": info.is_automated,
                    "is_trusted": info.is_automated,
                }
                for info in found
            ],
        }
    )
