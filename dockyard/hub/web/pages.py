"""What every web page shares: templates, who is asking, CSRF-checked forms, error pages."""

from __future__ import annotations

import datetime
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    select_autoescape,
)
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from dockyard.hub.accounts import AccountError, User
from dockyard.hub.context import Hub
from dockyard.hub.permissions import ANONYMOUS, Principal
from dockyard.hub.web.markdown import render_markdown
from dockyard.hub.web.sessions import CSRF_FIELD, CSRF_HEADER, Session, session_of

MAX_FORM_BYTES = 2 << 20  # a README may be 1 MiB


class PageError(Exception):
    """Ends a request with an error page."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


class NotFound(PageError):
    """The one answer for "missing" and "not yours to see": the page never says which."""

    def __init__(self) -> None:
        super().__init__(404, "Not found", "There is nothing here, or it is not yours to see.")


class Redirect(Exception):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def _ago(timestamp: float | None) -> str:
    if not timestamp:
        return "never"
    seconds = max(0, int(time.time() - timestamp))
    for size, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400, "day"),
                       (3600, "hour"), (60, "minute")):  # fmt: skip
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    return "just now"


def _date(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _iso(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")


def _size(count: int | None) -> str:
    value = float(count or 0)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover


def _number(count: int | None) -> str:
    value = int(count or 0)
    if value < 1000:
        return str(value)
    if value < 1_000_000:
        return f"{value / 1000:.1f}K".replace(".0K", "K")
    return f"{value / 1_000_000:.1f}M".replace(".0M", "M")


_loader = ChoiceLoader([PackageLoader("dockyard.hub.web", "templates")])
templates = Environment(
    loader=_loader,
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _expired(timestamp: float | None) -> bool:
    return timestamp is not None and timestamp < time.time()


templates.filters.update(
    ago=_ago,
    date=_date,
    iso=_iso,
    size=_size,
    number=_number,
    expired=_expired,
    markdown=render_markdown,
)
templates.filters["url"] = lambda value: quote(str(value), safe="/")


def add_templates(directory: Path) -> None:
    """Let an upper layer render its own templates here; they may extend "repository.html"."""
    if not any(
        isinstance(loader, FileSystemLoader) and Path(directory) in map(Path, loader.searchpath)
        for loader in _loader.loaders
    ):
        _loader.loaders.append(FileSystemLoader(directory))


@dataclass(frozen=True)
class RepositoryTab:
    """A tab an upper layer adds to every repository page; it links to /r/NAME/-/SUFFIX.

    Register it with `add_repository_tab(app, tab)` and serve its page with a route given to
    `web_routes(repository_routes=…)`; `admin_only` shows it only to the repository's admins.
    """

    label: str
    suffix: str
    admin_only: bool = False


def add_repository_tab(app: Starlette, tab: RepositoryTab) -> None:
    """Show `tab` on the repository pages of `app` (the Starlette app `hub_app` returned)."""
    current: list[RepositoryTab] = getattr(app.state, "repository_tabs", [])
    app.state.repository_tabs = [*(t for t in current if t.suffix != tab.suffix), tab]


def repository_tabs(request: Request) -> list[RepositoryTab]:
    return list(getattr(request.app.state, "repository_tabs", ()))


def hub_of(request: Request) -> Hub:
    return request.app.state.hub


def user_of(request: Request) -> User | None:
    return request.scope.get("dockyard.user")


def principal_of(request: Request) -> Principal:
    user = user_of(request)
    return Principal(user) if user is not None else ANONYMOUS


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def registry_host(request: Request) -> str:
    """HOST in `docker pull HOST/NAME`: the hub's public address, else what the browser used."""
    public = hub_of(request).public_url
    if public:
        parts = urlsplit(public if "://" in public else f"//{public}")
        if parts.netloc:
            return parts.netloc
    return request.headers.get("host") or request.url.netloc


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    session: Session = session_of(request)
    body = templates.get_template(template).render(
        request=request,
        user=user_of(request),
        csrf_token=session.csrf,
        csrf_field=CSRF_FIELD,
        path=request.url.path,
        query=request.query_params.get("q", ""),
        registry_host=registry_host(request),
        **context,
    )
    return HTMLResponse(body, status_code=status)


def require_user(request: Request) -> User:
    user = user_of(request)
    if user is None:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        raise Redirect("/login?next=" + quote(target, safe="/"))
    return user


def safe_next(value: str | None, default: str = "/") -> str:
    """Only paths on this site: never `//evil.example` or `https://…`."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value


async def form(request: Request) -> FormData:
    """The posted form, once its CSRF token has been checked against the session's."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
        raise PageError(413, "Too large", "That form is larger than this hub accepts.")
    data = await request.form(max_files=0, max_fields=50, max_part_size=MAX_FORM_BYTES)
    offered = data.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not session_of(request).csrf_matches(offered if isinstance(offered, str) else None):
        raise PageError(
            403,
            "Form expired",
            "This form was not sent from a page of this hub, or your session changed. "
            "Go back, reload the page and try again.",
        )
    return data


def text(data: FormData, key: str, default: str = "") -> str:
    value = data.get(key, default)
    return value if isinstance(value, str) else default


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


Handler = Callable[[Request], Awaitable[Response]]


def page(handler: Handler) -> Handler:
    """Turn PageError into an error page and Redirect into a 303 (HX-Redirect for htmx)."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except Redirect as redirect:
            if is_htmx(request):
                return Response(status_code=204, headers={"hx-redirect": redirect.url})
            return see_other(redirect.url)
        except PageError as error:
            response = render(
                request, "error.html", error.status, title=error.title, message=error.message
            )
            return response
        except AccountError as error:
            return render(request, "error.html", 400, title="That did not work", message=str(error))

    return wrapped
