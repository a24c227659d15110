"""Account settings: access tokens (shown once), password change, account deletion."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.hub.access_tokens import SCOPES
from dockyard.hub.accounts import AccountError, User
from dockyard.hub.web.pages import (
    form,
    hub_of,
    is_htmx,
    page,
    render,
    require_user,
    see_other,
    text,
)
from dockyard.hub.web.sessions import session_of

DAY = 86400.0
EXPIRY_CHOICES = (
    ("30", "30 days"),
    ("90", "90 days"),
    ("365", "1 year"),
    ("never", "Never"),
)
NOTICES = {"password": "Your password was changed."}


async def _settings_page(
    request: Request,
    user: User,
    status: int = 200,
    *,
    new_token: str | None = None,
    new_token_name: str = "",
    errors: dict[str, str] | None = None,
    notice: str | None = None,
) -> Response:
    return render(
        request,
        "account.html",
        status,
        tokens=await hub_of(request).tokens.list(user),
        scopes=SCOPES,
        expiry_choices=EXPIRY_CHOICES,
        new_token=new_token,
        new_token_name=new_token_name,
        errors=errors or {},
        notice=notice,
    )


@page
async def settings(request: Request) -> Response:
    user = require_user(request)
    notice = NOTICES.get(request.query_params.get("done", ""))
    return await _settings_page(request, user, notice=notice)


@page
async def create_token(request: Request) -> Response:
    data = await form(request)
    user = require_user(request)
    name = text(data, "name").strip()
    scopes = {value for value in data.getlist("scopes") if isinstance(value, str)}
    expiry = text(data, "expiry", "90")
    expires_in = None if expiry == "never" else (float(expiry) * DAY if expiry.isdigit() else -1)
    try:
        token = await hub_of(request).tokens.create(user, name, scopes, expires_in)
    except AccountError as error:
        message = str(error)
        return await _settings_page(
            request, user, 400, errors={"token": message[:1].upper() + message[1:] + "."}
        )
    # The only time the token's text exists outside the client: shown on this page, never again.
    return await _settings_page(request, user, 201, new_token=token, new_token_name=name)


@page
async def revoke_token(request: Request) -> Response:
    await form(request)
    user = require_user(request)
    try:
        token_id = int(request.path_params["token_id"])
    except ValueError:
        token_id = -1
    await hub_of(request).tokens.revoke(user, token_id)
    if is_htmx(request):
        return Response("", media_type="text/html")
    return see_other("/settings")


@page
async def change_password(request: Request) -> Response:
    data = await form(request)
    user = require_user(request)
    new = text(data, "new_password")
    if new != text(data, "confirm_password"):
        return await _settings_page(
            request, user, 400, errors={"password": "The two new passwords differ."}
        )
    try:
        await hub_of(request).accounts.change_password(user, text(data, "old_password"), new)
    except AccountError as error:
        message = str(error)
        return await _settings_page(
            request, user, 400, errors={"password": message[:1].upper() + message[1:] + "."}
        )
    session_of(request).sign_in(user.id)  # a new CSRF token along with the new password
    return see_other("/settings?done=password")


@page
async def delete_account(request: Request) -> Response:
    data = await form(request)
    user = require_user(request)
    hub = hub_of(request)
    if await hub.accounts.authenticate(user.username, text(data, "password")) is None:
        return await _settings_page(
            request,
            user,
            403,
            errors={"delete": "That is not your password; the account was not deleted."},
        )
    await hub.accounts.delete_user(user)
    hub.registry.meta.changes.bump()
    session_of(request).sign_out()
    return see_other("/")


routes = [
    Route("/settings", settings, methods=["GET"]),
    Route("/settings/tokens", create_token, methods=["POST"]),
    Route("/settings/tokens/{token_id}/revoke", revoke_token, methods=["POST"]),
    Route("/settings/password", change_password, methods=["POST"]),
    Route("/settings/delete", delete_account, methods=["POST"]),
]
