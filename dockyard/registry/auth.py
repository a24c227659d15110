"""How the registry asks whether a request may do what it asks; who users are is not its concern."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import bcrypt

from dockyard.registry.errors import Unauthorized
from dockyard.registry.http import Request

PULL = "pull"
PUSH = "push"
DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Scope:
    """`repository:<name>:<actions>`, or the registry catalog when `repository` is None."""

    repository: str | None
    actions: frozenset[str]


class Authorizer(Protocol):
    async def authorize(self, request: Request, scope: Scope | None) -> str | None:
        """The identity allowed to act, or raise Unauthorized/Denied. `scope` None: just log in."""

    async def visible(self, request: Request, names: list[str]) -> list[str]:
        """The repositories among `names` the request may know exist (for the catalog)."""


class EveryoneSeesAll:
    """Authorizers whose callers, once let in, may see every repository."""

    async def visible(self, request: Request, names: list[str]) -> list[str]:
        return names


class OpenAccess(EveryoneSeesAll):
    """No authentication: anyone may do anything, like a plain `registry` container."""

    async def authorize(self, request: Request, scope: Scope | None) -> str | None:
        return None


class HtpasswdAccess(EveryoneSeesAll):
    """HTTP Basic against an htpasswd file of bcrypt entries (`htpasswd -B`)."""

    CACHE_SECONDS = 300.0

    def __init__(self, path: Path, realm: str = "Dockyard Registry") -> None:
        self.path = path
        self.realm = realm
        self._entries: dict[str, bytes] = {}
        self._loaded_mtime = -1.0
        self._verified: dict[tuple[str, bytes], float] = {}
        self._load()

    def _load(self) -> None:
        mtime = self.path.stat().st_mtime
        if mtime == self._loaded_mtime:
            return
        entries: dict[str, bytes] = {}
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not hashed.startswith(("$2y$", "$2b$", "$2a$")):
                raise ValueError(
                    f"{self.path}:{number}: only bcrypt entries are supported (htpasswd -B)"
                )
            entries[user] = hashed.replace("$2y$", "$2b$", 1).encode()
        self._entries = entries
        self._verified.clear()
        self._loaded_mtime = mtime

    def _challenge(self, message: str) -> Unauthorized:
        return Unauthorized(message, headers={"www-authenticate": f'Basic realm="{self.realm}"'})

    async def authorize(self, request: Request, scope: Scope | None) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic" or not value:
            raise self._challenge("authentication required")
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise self._challenge("malformed Basic credentials") from None
        if not sep:
            raise self._challenge("malformed Basic credentials")
        self._load()
        if not await self._check(user, password.encode()):
            raise self._challenge("invalid username or password")
        return user

    async def _check(self, user: str, password: bytes) -> bool:
        hashed = self._entries.get(user)
        if hashed is None:
            return False
        key = (user, hashlib.sha256(hashed + b"\0" + password).digest())
        now = time.monotonic()
        if self._verified.get(key, 0.0) > now:
            return True
        if not await asyncio.to_thread(bcrypt.checkpw, password, hashed):
            return False
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[key] = now + self.CACHE_SECONDS
        return True
