"""Web sessions: a signed cookie (itsdangerous) naming the signed-in user, and a CSRF token per
session that every form POST must send back.

The cookie is HttpOnly and SameSite=Lax (Secure when the hub is reached over https). It holds no
secret beyond the CSRF token: the user id is only trusted because the cookie is signed with a
key the hub keeps next to its token-signing key, so every node of a scaled hub shares it.

The session middleware also hands the JSON API the session's user (`scope["dockyard.user"]`),
but for a request that changes something (POST, PUT, PATCH, DELETE) only when it carries the
CSRF token in the `X-CSRF-Token` header: a cross-site request never gets the user's rights.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection

from dockyard.hub.context import Hub

COOKIE = "dockyard_session"
MAX_AGE = 14 * 24 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECRET_FILE = "web-session.key"
# Paths a machine calls: they get a session only if they arrived with one.
_MACHINE_PREFIXES = ("/api/", "/token", "/v1/", "/v2/", "/static/")

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


@dataclass
class Session:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    user_id: int | None = None
    issued: float = field(default_factory=time.time)
    changed: bool = False

    def sign_in(self, user_id: int) -> None:
        """A fresh CSRF token at every sign-in: nothing learnt before it is worth anything."""
        self.user_id = user_id
        self.csrf = secrets.token_urlsafe(24)
        self.issued = time.time()
        self.changed = True

    def sign_out(self) -> None:
        self.user_id = None
        self.csrf = secrets.token_urlsafe(24)
        self.issued = time.time()
        self.changed = True

    def csrf_matches(self, offered: str | None) -> bool:
        return bool(offered) and hmac.compare_digest(str(offered), self.csrf)


def load_secret(directory: Path) -> bytes:
    """The key that signs session cookies; made once, readable by the hub's user only."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SECRET_FILE
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)  # first writer wins when several workers start at once
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes()


class SessionCodec:
    def __init__(self, secret: bytes) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="dockyard.web.session")

    def load(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=MAX_AGE)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
            return None
        user_id = data.get("uid")
        return Session(
            csrf=data["csrf"],
            user_id=user_id if isinstance(user_id, int) else None,
            issued=float(data.get("iat", 0)),
        )

    def dump(self, session: Session) -> str:
        return self._serializer.dumps(
            {"csrf": session.csrf, "uid": session.user_id, "iat": int(session.issued)}
        )


def session_of(connection: HTTPConnection) -> Session:
    return connection.scope["dockyard.session"]


class SessionMiddleware:
    """Reads the session cookie, finds its user, writes the cookie back when it changed."""

    def __init__(self, app: Any, hub: Hub, secret: bytes) -> None:
        self.app = app
        self.hub = hub
        self.codec = SessionCodec(secret)
        self.secure = hub.public_url.startswith("https://")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        path: str = scope["path"]
        machine = path.startswith(_MACHINE_PREFIXES)
        cookie = connection.cookies.get(COOKIE)
        session = self.codec.load(cookie)
        if session is None:
            session = Session(changed=not machine)
        user = None
        if session.user_id is not None:
            user = await self.hub.accounts.user_by_id(session.user_id)
            if user is None or not user.is_active:
                session.sign_out()
                user = None
        scope["dockyard.session"] = session
        if user is not None:
            unsafe = scope["method"] not in SAFE_METHODS
            if not (unsafe and path.startswith("/api/")) or session.csrf_matches(
                connection.headers.get(CSRF_HEADER)
            ):
                scope["dockyard.user"] = user
        secure = self.secure or scope.get("scheme") == "https"

        async def send_with_session(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if session.changed:
                    headers.append("set-cookie", self._cookie(session, secure))
                if headers.get("content-type", "").startswith("text/html"):
                    for name, value in SECURITY_HEADERS.items():
                        headers.setdefault(name, value)
                    headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_session)

    def _cookie(self, session: Session, secure: bool) -> str:
        parts = [
            f"{COOKIE}={self.codec.dump(session)}",
            "Path=/",
            f"Max-Age={MAX_AGE}",
            "HttpOnly",
            "SameSite=Lax",
        ]
        if secure:
            parts.append("Secure")
        return "; ".join(parts)
