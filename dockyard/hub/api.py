"""The hub's JSON API under /api/v1: accounts, tokens, organisations, repositories."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dockyard.hub.access_tokens import TokenInfo
from dockyard.hub.accounts import AccountError, User
from dockyard.hub.context import BadCredentials, Hub, RateLimited
from dockyard.hub.permissions import Principal
from dockyard.hub.repositories import RepositoryInfo

MAX_BODY = 2 << 20


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


NOT_FOUND = "not found"


def _hub(request: Request) -> Hub:
    return request.app.state.hub


async def principal(request: Request) -> Principal:
    """Who the request is from: Basic credentials, a Bearer access token, or a web session."""
    hub = _hub(request)
    session_user = request.scope.get("dockyard.user")
    if session_user is not None and not request.headers.get("authorization"):
        return Principal(session_user)
    try:
        return await hub.principal_from_header(
            request.headers.get("authorization"),
            request.client.host if request.client else "unknown",
        )
    except RateLimited as exc:
        raise ApiError(429, str(exc)) from None
    except BadCredentials as exc:
        raise ApiError(401, str(exc)) from None


async def signed_in(request: Request) -> Principal:
    who = await principal(request)
    if who.user is None:
        raise ApiError(401, "sign in, or send Basic credentials or an access token")
    return who


async def read_json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(413, "request body too large")
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        raise ApiError(400, "the body must be JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, "the body must be a JSON object")
    return value


def _user(user: User) -> dict[str, Any]:
    return {"username": user.username, "email": user.email, "is_admin": user.is_admin}


def _repository(info: RepositoryInfo) -> dict[str, Any]:
    return {
        "name": info.display_name,
        "namespace": info.namespace,
        "is_private": info.is_private,
        "description": info.description,
        "readme": info.readme,
        "star_count": info.star_count,
        "pull_count": info.pull_count,
        "last_pushed": info.last_pushed,
        "is_official": info.is_official,
        "is_automated": info.is_automated,
    }


def _token(info: TokenInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "scopes": sorted(info.scopes),
        "created_at": info.created_at,
        "expires_at": info.expires_at,
        "last_used_at": info.last_used_at,
    }


Handler = Callable[[Request], Awaitable[Response]]


def endpoint(handler: Handler) -> Handler:
    """Turn ApiError and AccountError into JSON answers."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        except AccountError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    return wrapped


async def _string(body: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{key} must be a string")
    return value


@endpoint
async def sign_up(request: Request) -> Response:
    hub = _hub(request)
    if not hub.open_signup:
        raise ApiError(403, "sign-up is closed on this hub; ask an administrator")
    body = await read_json(request)
    user, confirm = await hub.accounts.create_user(
        str(await _string(body, "username")),
        str(await _string(body, "email")),
        str(await _string(body, "password")),
        active=not hub.email_confirmation,
    )
    if confirm is not None:
        await hub.send_confirmation(user, confirm)
    return JSONResponse({**_user(user), "is_active": user.is_active}, status_code=201)


@endpoint
async def confirm_email(request: Request) -> Response:
    user = await _hub(request).accounts.confirm_email(request.path_params["token"])
    if user is None:
        raise ApiError(404, "unknown or used confirmation link")
    return JSONResponse(_user(user))


@endpoint
async def current_user(request: Request) -> Response:
    who = await signed_in(request)
    assert who.user is not None
    return JSONResponse(_user(who.user))


@endpoint
async def change_password(request: Request) -> Response:
    who = await signed_in(request)
    assert who.user is not None
    body = await read_json(request)
    await _hub(request).accounts.change_password(
        who.user, str(await _string(body, "old_password")), str(await _string(body, "new_password"))
    )
    return Response(status_code=204)


@endpoint
async def delete_account(request: Request) -> Response:
    who = await signed_in(request)
    assert who.user is not None
    body = await read_json(request)
    hub = _hub(request)
    if await hub.accounts.authenticate(who.user.username, str(body.get("password", ""))) is None:
        raise ApiError(403, "confirm with your password to delete the account")
    await hub.accounts.delete_user(who.user)
    hub.registry.meta.changes.bump()
    return Response(status_code=204)


@endpoint
async def list_tokens(request: Request) -> Response:
    who = await signed_in(request)
    assert who.user is not None
    return JSONResponse([_token(t) for t in await _hub(request).tokens.list(who.user)])


@endpoint
async def create_token(request: Request) -> Response:
    who = await signed_in(request)
    assert who.user is not None
    if who.scopes is not None:
        raise ApiError(403, "an access token cannot create access tokens; use your password")
    body = await read_json(request)
    scopes = body.get("scopes", ["read"])
    expires_in = body.get("expires_in")
    if not isinstance(scopes, list) or not all(isinstance(x, str) for x in scopes):
        raise ApiError(400, "scopes must be a list of strings")
    if expires_in is not None and not isinstance(expires_in, int | float):
        raise ApiError(400, "expires_in must be a number of seconds")
    token = await _hub(request).tokens.create(
        who.user, str(await _string(body, "name")), set(scopes), expires_in
    )
    return JSONResponse({"token": token, "scopes": sorted(scopes)}, status_code=201)


@endpoint
async def revoke_token(request: Request) -> Response:
    who = await signed_in(request)
    assert who.user is not None
    try:
        token_id = int(request.path_params["token_id"])
    except ValueError:
        raise ApiError(404, NOT_FOUND) from None
    if not await _hub(request).tokens.revoke(who.user, token_id):
        raise ApiError(404, NOT_FOUND)
    return Response(status_code=204)


@endpoint
async def create_organization(request: Request) -> Response:
    who = await signed_in(request)
    assert who.user is not None
    body = await read_json(request)
    await _hub(request).accounts.create_organization(str(await _string(body, "name")), who.user)
    return JSONResponse({"name": body["name"]}, status_code=201)


async def _owner_of(request: Request, organization: str) -> Hub:
    who = await signed_in(request)
    assert who.user is not None
    hub = _hub(request)
    if not who.user.is_admin and await hub.accounts.membership(organization, who.user) != "owner":
        raise ApiError(404, NOT_FOUND)
    return hub


async def _named_user(hub: Hub, username: str) -> User:
    user = await hub.accounts.user_by_name(username)
    if user is None:
        raise ApiError(404, f"no user named {username!r}")
    return user


@endpoint
async def add_member(request: Request) -> Response:
    organization = request.path_params["org"]
    hub = await _owner_of(request, organization)
    body = await read_json(request)
    user = await _named_user(hub, str(await _string(body, "username")))
    await hub.accounts.add_member(organization, user, owner=bool(body.get("owner", False)))
    return Response(status_code=204)


@endpoint
async def create_team(request: Request) -> Response:
    organization = request.path_params["org"]
    hub = await _owner_of(request, organization)
    body = await read_json(request)
    await hub.accounts.create_team(organization, str(await _string(body, "name")))
    return JSONResponse({"name": body["name"]}, status_code=201)


@endpoint
async def add_team_member(request: Request) -> Response:
    organization = request.path_params["org"]
    hub = await _owner_of(request, organization)
    user = await _named_user(hub, request.path_params["username"])
    await hub.accounts.add_team_member(organization, request.path_params["team"], user)
    return Response(status_code=204)


@endpoint
async def set_team_permission(request: Request) -> Response:
    organization = request.path_params["org"]
    hub = await _owner_of(request, organization)
    body = await read_json(request)
    info = await hub.repositories.get(request.path_params["name"])
    if info is None or info.namespace != organization:
        raise ApiError(404, NOT_FOUND)
    role = await _string(body, "role", required=False)
    await hub.accounts.set_team_permission(organization, request.path_params["team"], info.id, role)
    return Response(status_code=204)


@endpoint
async def create_repository(request: Request) -> Response:
    who = await signed_in(request)
    body = await read_json(request)
    info = await _hub(request).repositories.create(
        who,
        str(await _string(body, "name")),
        is_private=bool(body.get("is_private", False)),
        description=str(body.get("description", "")),
    )
    return JSONResponse(_repository(info), status_code=201)


async def readable_repository(request: Request) -> tuple[Hub, Principal, RepositoryInfo]:
    hub = _hub(request)
    who = await principal(request)
    info = await hub.repositories.visible(who, request.path_params["name"])
    if info is None:
        raise ApiError(404, NOT_FOUND)
    return hub, who, info


async def administered_repository(request: Request) -> tuple[Hub, Principal, RepositoryInfo]:
    hub, who, info = await readable_repository(request)
    if not await hub.permissions.can_admin(who, info.name):
        raise ApiError(403, "you need admin rights on this repository")
    return hub, who, info


@endpoint
async def get_repository(request: Request) -> Response:
    hub, who, info = await readable_repository(request)
    result = _repository(info)
    if who.user is not None:
        result["starred"] = await hub.repositories.is_starred(who.user.id, info.id)
    return JSONResponse(result)


@endpoint
async def update_repository(request: Request) -> Response:
    hub, _, info = await administered_repository(request)
    body = await read_json(request)
    is_private = body.get("is_private")
    if is_private is not None and not isinstance(is_private, bool):
        raise ApiError(400, "is_private must be true or false")
    await hub.repositories.update(
        info.name,
        is_private=is_private,
        description=await _string(body, "description", required=False),
        readme=await _string(body, "readme", required=False),
    )
    updated = await hub.repositories.get(info.name)
    assert updated is not None
    return JSONResponse(_repository(updated))


@endpoint
async def delete_repository(request: Request) -> Response:
    hub, _, info = await administered_repository(request)
    await hub.repositories.delete(info.name)
    return Response(status_code=204)


@endpoint
async def list_tags(request: Request) -> Response:
    hub, _, info = await readable_repository(request)
    return JSONResponse(
        [
            {
                "name": tag.name,
                "digest": tag.digest,
                "media_type": tag.media_type,
                "size": tag.size,
                "platforms": tag.platforms,
                "pushed_at": tag.pushed_at,
            }
            for tag in await hub.repositories.tags(info.name)
        ]
    )


@endpoint
async def delete_tag(request: Request) -> Response:
    hub, _, info = await administered_repository(request)
    if not await hub.repositories.delete_tag(info.name, request.path_params["tag"]):
        raise ApiError(404, NOT_FOUND)
    return Response(status_code=204)


@endpoint
async def star(request: Request) -> Response:
    hub, who, info = await readable_repository(request)
    if who.user is None:
        raise ApiError(401, "sign in to star repositories")
    await hub.repositories.star(who.user.id, info.name, request.method == "PUT")
    return Response(status_code=204)


@endpoint
async def collaborator(request: Request) -> Response:
    hub, _, info = await administered_repository(request)
    if (
        info.namespace != info.name.split("/")[0]
        or await hub.accounts.namespace_kind(info.namespace) != "user"
    ):
        raise ApiError(400, "organisation repositories are shared through teams")
    user = await _named_user(hub, request.path_params["username"])
    role = None
    if request.method == "PUT":
        role = await _string(await read_json(request), "role")
    await hub.repositories.set_collaborator(info.name, user.id, role)
    return Response(status_code=204)


@endpoint
async def namespace_repositories(request: Request) -> Response:
    hub = _hub(request)
    who = await principal(request)
    found = await hub.repositories.in_namespace(who, request.path_params["namespace"])
    return JSONResponse([_repository(info) for info in found])


REPO = "/api/v1/repositories/{name:path}"
routes = [
    Route("/api/v1/users", sign_up, methods=["POST"]),
    Route("/api/v1/confirm/{token}", confirm_email, methods=["GET", "POST"]),
    Route("/api/v1/user", current_user, methods=["GET"]),
    Route("/api/v1/user", delete_account, methods=["DELETE"]),
    Route("/api/v1/user/password", change_password, methods=["PUT"]),
    Route("/api/v1/user/tokens", list_tokens, methods=["GET"]),
    Route("/api/v1/user/tokens", create_token, methods=["POST"]),
    Route("/api/v1/user/tokens/{token_id}", revoke_token, methods=["DELETE"]),
    Route("/api/v1/orgs", create_organization, methods=["POST"]),
    Route("/api/v1/orgs/{org}/members", add_member, methods=["POST"]),
    Route("/api/v1/orgs/{org}/teams", create_team, methods=["POST"]),
    Route("/api/v1/orgs/{org}/teams/{team}/members/{username}", add_team_member, methods=["PUT"]),
    Route(
        "/api/v1/orgs/{org}/teams/{team}/repositories/{name:path}",
        set_team_permission,
        methods=["PUT"],
    ),
    Route("/api/v1/namespaces/{namespace}/repositories", namespace_repositories),
    Route("/api/v1/repositories", create_repository, methods=["POST"]),
    Route(REPO + "/tags/{tag}", delete_tag, methods=["DELETE"]),
    Route(REPO + "/tags", list_tags, methods=["GET"]),
    Route(REPO + "/star", star, methods=["PUT", "DELETE"]),
    Route(REPO + "/collaborators/{username}", collaborator, methods=["PUT", "DELETE"]),
    Route(REPO, get_repository, methods=["GET"]),
    Route(REPO, update_repository, methods=["PATCH"]),
    Route(REPO, delete_repository, methods=["DELETE"]),
]
