"""The Docker registry token service: `GET /token` (Basic or anonymous) and `POST /token`
(OAuth2 password and refresh_token grants), issuing JWTs with the actions each scope allows."""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from dockyard.hub.access_tokens import REFRESH, SCOPES
from dockyard.hub.context import BadCredentials, Hub, RateLimited
from dockyard.hub.names import canonical_repository
from dockyard.hub.permissions import ANONYMOUS, Principal
from dockyard.hub.signing import TOKEN_SECONDS

_SCOPE = re.compile(r"^(repository|registry)(?:\(([a-z0-9]+)\))?:(.+):([a-z*,]*)$")
REFRESH_SECONDS = 90 * 24 * 3600.0


def _error(status: int, code: str, message: str, retry_after: float | None = None) -> JSONResponse:
    headers = {} if retry_after is None else {"retry-after": str(int(retry_after) + 1)}
    return JSONResponse(
        {"errors": [{"code": code, "message": message}], "error": message},
        status_code=status,
        headers=headers,
    )


def parse_scopes(values: list[str]) -> list[tuple[str, str, set[str]]]:
    """`repository:name:pull,push` (several per value, space-separated) → (type, name, actions)."""
    scopes = []
    for value in values:
        for item in value.split():
            match = _SCOPE.match(item)
            if match:
                kind, _, name, actions = match.groups()
                scopes.append((kind, name, {a for a in actions.split(",") if a}))
    return scopes


async def grant(
    hub: Hub, principal: Principal, scopes: list[tuple[str, str, set[str]]]
) -> list[dict[str, Any]]:
    access = []
    for kind, name, wanted in scopes:
        if kind == "registry":
            if name == "catalog" and "*" in wanted and principal.user is not None:
                access.append({"type": "registry", "name": "catalog", "actions": ["*"]})
            continue
        allowed = await hub.permissions.actions(principal, canonical_repository(name))
        if "*" in wanted:
            wanted = set(allowed)
        actions = sorted(wanted & allowed)
        access.append({"type": "repository", "name": name, "actions": actions})
    return access


async def _respond(
    hub: Hub,
    principal: Principal,
    scopes: list[tuple[str, str, set[str]]],
    offline: bool,
    oauth: bool,
) -> JSONResponse:
    access = await grant(hub, principal, scopes)
    token = hub.signer.issue(principal.name, access)
    body: dict[str, Any] = {
        "token": token,
        "access_token": token,
        "expires_in": TOKEN_SECONDS,
        "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if oauth:
        body["scope"] = " ".join(
            f"{a['type']}:{a['name']}:{','.join(a['actions'])}" for a in access
        )
    if offline and principal.user is not None:
        body["refresh_token"] = await hub.tokens.create(
            principal.user,
            "docker login",
            set(principal.scopes or SCOPES),
            expires_in=REFRESH_SECONDS,
            kind=REFRESH,
        )
    return JSONResponse(body, headers={"cache-control": "no-store"})


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def get_token(request: Request) -> JSONResponse:
    hub: Hub = request.app.state.hub
    service = request.query_params.get("service")
    if service and service != hub.signer.service:
        return _error(400, "UNSUPPORTED", f"this token service serves {hub.signer.service!r}")
    try:
        principal = await hub.principal_from_header(
            request.headers.get("authorization"), _client(request)
        )
    except RateLimited as exc:
        return _error(429, "TOOMANYREQUESTS", str(exc), exc.retry_after)
    except BadCredentials as exc:
        return _error(401, "UNAUTHORIZED", str(exc))
    scopes = parse_scopes(request.query_params.getlist("scope"))
    offline = request.query_params.get("offline_token") == "true"
    return await _respond(hub, principal, scopes, offline, oauth=False)


async def post_token(request: Request) -> JSONResponse:
    hub: Hub = request.app.state.hub
    form = await request.form()
    grant_type = str(form.get("grant_type", ""))
    service = str(form.get("service", ""))
    if service and service != hub.signer.service:
        return _error(400, "UNSUPPORTED", f"this token service serves {hub.signer.service!r}")
    principal = ANONYMOUS
    offline = form.get("access_type") == "offline"
    try:
        if grant_type == "password":
            principal = await hub.login(
                str(form.get("username", "")), str(form.get("password", "")), _client(request)
            )
        elif grant_type == "refresh_token":
            found = await hub.tokens.verify(str(form.get("refresh_token", "")), kind=REFRESH)
            if found is None:
                return _error(401, "UNAUTHORIZED", "invalid or expired refresh token")
            principal = Principal(found[0], found[1])
            offline = False
        else:
            return _error(400, "UNSUPPORTED", "grant_type must be password or refresh_token")
    except RateLimited as exc:
        return _error(429, "TOOMANYREQUESTS", str(exc), exc.retry_after)
    except BadCredentials as exc:
        return _error(401, "UNAUTHORIZED", str(exc))
    scopes = parse_scopes([str(v) for v in form.getlist("scope")])
    response = await _respond(hub, principal, scopes, offline, oauth=True)
    return response
