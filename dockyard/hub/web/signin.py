"""Sign up, log in (under the hub's failed-login limit), log out, confirm an email address."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.hub.access_tokens import looks_like_token
from dockyard.hub.accounts import AccountError
from dockyard.hub.context import BadCredentials, RateLimited
from dockyard.hub.web.pages import (
    client_of,
    form,
    hub_of,
    page,
    render,
    safe_next,
    see_other,
    text,
    user_of,
)
from dockyard.hub.web.sessions import session_of


@page
async def signup_form(request: Request) -> Response:
    if user_of(request) is not None:
        return see_other("/")
    return render(request, "signup.html", error=None, values={})


@page
async def signup(request: Request) -> Response:
    hub = hub_of(request)
    data = await form(request)
    values = {"username": text(data, "username").strip(), "email": text(data, "email").strip()}
    if not hub.open_signup:
        return render(
            request,
            "signup.html",
            403,
            error="Sign-up is closed on this hub; ask an administrator for an account.",
            values=values,
        )
    try:
        user, confirm = await hub.accounts.create_user(
            values["username"],
            values["email"],
            text(data, "password"),
            active=not hub.email_confirmation,
        )
    except AccountError as error:
        return render(request, "signup.html", 400, error=str(error).capitalize(), values=values)
    if confirm is not None:
        await hub.send_confirmation(user, confirm)
        return render(request, "confirm.html", 201, confirmed=None, email=user.email)
    session_of(request).sign_in(user.id)
    return see_other(f"/u/{user.username}")


@page
async def login_form(request: Request) -> Response:
    next_url = safe_next(request.query_params.get("next"))
    if user_of(request) is not None:
        return see_other(next_url)
    return render(request, "login.html", error=None, username="", next_url=next_url)


@page
async def login(request: Request) -> Response:
    hub = hub_of(request)
    data = await form(request)
    username = text(data, "username").strip().lower()
    password = text(data, "password")
    next_url = safe_next(text(data, "next"))

    def again(status: int, error: str, headers: dict[str, str] | None = None) -> Response:
        response = render(
            request, "login.html", status, error=error, username=username, next_url=next_url
        )
        response.headers.update(headers or {})
        return response

    if not username or not password:
        return again(400, "Enter your username and password.")
    if looks_like_token(password):
        return again(
            400, "Sign in with your password: access tokens are for docker login and the API."
        )
    try:
        principal = await hub.login(username, password, client_of(request))
    except RateLimited as error:
        return again(
            429,
            f"Too many failed attempts. Try again in {int(error.retry_after) + 1} seconds.",
            {"retry-after": str(int(error.retry_after) + 1)},
        )
    except BadCredentials:
        return again(401, "Wrong username or password.")
    assert principal.user is not None
    session_of(request).sign_in(principal.user.id)
    return see_other(next_url)


@page
async def logout(request: Request) -> Response:
    await form(request)
    session_of(request).sign_out()
    return see_other("/")


@page
async def confirm(request: Request) -> Response:
    user = await hub_of(request).accounts.confirm_email(request.path_params["token"])
    if user is None:
        return render(request, "confirm.html", 404, confirmed=False, email="")
    session_of(request).sign_in(user.id)
    return render(request, "confirm.html", confirmed=True, email=user.email)


routes = [
    Route("/signup", signup_form, methods=["GET"]),
    Route("/signup", signup, methods=["POST"]),
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/confirm/{token}", confirm, methods=["GET"]),
]
