"""A repository's pages: overview (README, pull commands, stars), tags, settings; creating one.

Every page and action answers the same 404 page for a repository that does not exist and for
one the visitor may not read; settings and admin actions answer it too for those who may read
but not administer.

An upper layer adds a tab (e.g. builds) with `pages.add_repository_tab`, a route for
`BASE + "/-/SUFFIX"` given to `web_routes(repository_routes=…)`, and a handler that calls
`readable_repository` then `repository_page(request, info, "SUFFIX", "its.html", …)`, its
template extending "repository.html" and filling `{% block tab_content %}`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.hub.accounts import ORGANIZATION, ROLES, USER, AccountError
from dockyard.hub.context import Hub
from dockyard.hub.permissions import Principal
from dockyard.hub.repositories import RepositoryInfo
from dockyard.hub.web.pages import (
    NotFound,
    Redirect,
    form,
    hub_of,
    is_htmx,
    page,
    principal_of,
    render,
    repository_tabs,
    require_user,
    see_other,
    text,
)

BASE = "/r/{name:path}"


def repository_url(info: RepositoryInfo, tab: str = "") -> str:
    return f"/r/{info.name}" + (f"/-/{tab}" if tab else "")


async def readable_repository(request: Request) -> tuple[Hub, Principal, RepositoryInfo]:
    hub = hub_of(request)
    principal = principal_of(request)
    info = await hub.repositories.visible(principal, request.path_params["name"])
    if info is None:
        raise NotFound()
    return hub, principal, info


async def _administered(request: Request) -> tuple[Hub, Principal, RepositoryInfo]:
    hub, principal, info = await readable_repository(request)
    if not await hub.permissions.can_admin(principal, info.name):
        raise NotFound()
    return hub, principal, info


async def _context(
    request: Request, hub: Hub, principal: Principal, info: RepositoryInfo, tab: str
) -> dict[str, object]:
    user = principal.user
    can_admin = await hub.permissions.can_admin(principal, info.name)
    return {
        "repo": info,
        "tab": tab,
        "tags": await hub.repositories.tags(info.name),
        "starred": user is not None and await hub.repositories.is_starred(user.id, info.id),
        "can_admin": can_admin,
        "extra_tabs": [t for t in repository_tabs(request) if can_admin or not t.admin_only],
        "repo_url": repository_url(info),
    }


async def repository_page(
    request: Request,
    info: RepositoryInfo,
    tab: str,
    template: str = "repository.html",
    status: int = 200,
    **extra: object,
) -> Response:
    """A repository page with its header and tabs, `tab` selected, for a readable `info`."""
    hub = hub_of(request)
    context = await _context(request, hub, principal_of(request), info, tab)
    return render(request, template, status, **context, **extra)


@page
async def overview(request: Request) -> Response:
    _, _, info = await readable_repository(request)
    return await repository_page(request, info, "")


@page
async def tags(request: Request) -> Response:
    _, _, info = await readable_repository(request)
    return await repository_page(request, info, "tags")


async def _settings_page(
    request: Request,
    hub: Hub,
    principal: Principal,
    info: RepositoryInfo,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    context = await _context(request, hub, principal, info, "settings")
    kind = await hub.accounts.namespace_kind(info.namespace)
    team_roles: list[tuple[str, str]] = []
    if kind == ORGANIZATION:
        granted = await hub.accounts.team_roles(info.namespace, info.id)
        names = [str(team["name"]) for team in await hub.accounts.teams(info.namespace)]
        team_roles = [(name, granted.get(name, "")) for name in names]
    return render(
        request,
        "repository.html",
        status,
        collaborators=await hub.repositories.collaborators(info.name) if kind == USER else [],
        namespace_kind=kind,
        team_roles=team_roles,
        roles=ROLES,
        error=error,
        notice=notice,
        **context,
    )


@page
async def settings(request: Request) -> Response:
    hub, principal, info = await _administered(request)
    notice = "Saved." if request.query_params.get("saved") else None
    return await _settings_page(request, hub, principal, info, notice=notice)


@page
async def save_settings(request: Request) -> Response:
    data = await form(request)
    hub, principal, info = await _administered(request)
    visibility = text(data, "visibility", "private" if info.is_private else "public")
    try:
        await hub.repositories.update(
            info.name,
            is_private=visibility == "private",
            description=text(data, "description").strip(),
            readme=text(data, "readme").replace("\r\n", "\n"),
        )
    except AccountError as error:
        return await _settings_page(request, hub, principal, info, 400, error=str(error))
    return see_other(repository_url(info, "settings") + "?saved=1")


@page
async def add_collaborator(request: Request) -> Response:
    data = await form(request)
    hub, principal, info = await _administered(request)
    username = text(data, "username").strip().lower()
    role = text(data, "role", "read")
    problem = None
    if await hub.accounts.namespace_kind(info.namespace) != USER:
        problem = "Organisation repositories are shared through teams."
    elif role not in ROLES:
        problem = "Pick a role: read, write or admin."
    elif username == info.namespace:
        problem = "The owner already has every right."
    collaborator = None if problem else await hub.accounts.user_by_name(username)
    if problem is None and collaborator is None:
        problem = f"There is no user named {username!r}."
    if problem is not None or collaborator is None:
        return await _settings_page(request, hub, principal, info, 400, error=problem)
    await hub.repositories.set_collaborator(info.name, collaborator.id, role)
    return see_other(repository_url(info, "settings") + "?saved=1")


@page
async def remove_collaborator(request: Request) -> Response:
    await form(request)
    hub, _, info = await _administered(request)
    collaborator = await hub.accounts.user_by_name(request.path_params["username"])
    if collaborator is not None:
        await hub.repositories.set_collaborator(info.name, collaborator.id, None)
    return see_other(repository_url(info, "settings") + "?saved=1")


@page
async def set_team_role(request: Request) -> Response:
    data = await form(request)
    hub, principal, info = await _administered(request)
    role = text(data, "role")
    if await hub.accounts.namespace_kind(info.namespace) != ORGANIZATION:
        return await _settings_page(
            request, hub, principal, info, 400, error="Only organisation repositories have teams."
        )
    if role and role not in ROLES:
        return await _settings_page(
            request, hub, principal, info, 400, error="Pick a role: none, read, write or admin."
        )
    try:
        await hub.accounts.set_team_permission(
            info.namespace, text(data, "team"), info.id, role or None
        )
    except AccountError as error:
        message = str(error)
        return await _settings_page(
            request, hub, principal, info, 400, error=message[:1].upper() + message[1:] + "."
        )
    return see_other(repository_url(info, "settings") + "?saved=1")


@page
async def delete_repository(request: Request) -> Response:
    data = await form(request)
    hub, principal, info = await _administered(request)
    if text(data, "confirm").strip() not in (info.name, info.display_name):
        return await _settings_page(
            request,
            hub,
            principal,
            info,
            400,
            error=f"Type {info.display_name} to confirm that the repository should go.",
        )
    await hub.repositories.delete(info.name)
    return see_other(f"/u/{info.namespace}")


@page
async def delete_tag(request: Request) -> Response:
    await form(request)
    hub, _, info = await _administered(request)
    await hub.repositories.delete_tag(info.name, request.path_params["tag"])
    if is_htmx(request):
        return Response("", media_type="text/html")
    return see_other(repository_url(info, "tags"))


@page
async def star(request: Request) -> Response:
    data = await form(request)
    hub, principal, info = await readable_repository(request)
    user = principal.user
    if user is None:
        raise Redirect(f"/login?next={repository_url(info)}")
    starred = text(data, "star") == "1"
    await hub.repositories.star(user.id, info.name, starred)
    if is_htmx(request):
        updated = await hub.repositories.get(info.name)
        assert updated is not None
        return render(
            request, "_star.html", repo=updated, starred=starred, repo_url=repository_url(info)
        )
    return see_other(repository_url(info))


@page
async def new_form(request: Request) -> Response:
    user = require_user(request)
    return render(
        request,
        "new_repository.html",
        error=None,
        values={"namespace": request.query_params.get("namespace", user.username)},
    )


@page
async def create(request: Request) -> Response:
    data = await form(request)
    user = require_user(request)
    values = {
        "namespace": text(data, "namespace", user.username).strip().lower(),
        "name": text(data, "name").strip().lower(),
        "description": text(data, "description").strip(),
        "visibility": text(data, "visibility", "public"),
    }
    try:
        info = await hub_of(request).repositories.create(
            principal_of(request),
            f"{values['namespace']}/{values['name']}",
            is_private=values["visibility"] == "private",
            description=values["description"],
        )
    except AccountError as error:
        message = str(error)
        return render(
            request, "new_repository.html", 400, error=message[:1].upper() + message[1:],
            values=values,
        )  # fmt: skip
    return see_other(repository_url(info))


routes = [
    Route("/new", new_form, methods=["GET"]),
    Route("/new", create, methods=["POST"]),
    Route(BASE + "/-/tags/{tag}/delete", delete_tag, methods=["POST"]),
    Route(BASE + "/-/tags", tags, methods=["GET"]),
    Route(BASE + "/-/settings", settings, methods=["GET"]),
    Route(BASE + "/-/settings", save_settings, methods=["POST"]),
    Route(BASE + "/-/collaborators/{username}/remove", remove_collaborator, methods=["POST"]),
    Route(BASE + "/-/collaborators", add_collaborator, methods=["POST"]),
    Route(BASE + "/-/teams", set_team_role, methods=["POST"]),
    Route(BASE + "/-/delete", delete_repository, methods=["POST"]),
    Route(BASE + "/-/star", star, methods=["POST"]),
]
# Last of all: BASE matches any path below /r/, an upper layer's tab pages included.
overview_route = Route(BASE, overview, methods=["GET"])
