"""Personal access tokens (usable as a password) and OAuth2 refresh tokens, stored hashed."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from dockyard.db import schema as s
from dockyard.db.engine import begin
from dockyard.hub.accounts import AccountError, Accounts, User

SCOPES = ("read", "write", "delete")
PERSONAL = "personal"
REFRESH = "refresh"
PREFIX = "dyk_"
TOUCH_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    name: str
    scopes: frozenset[str]
    created_at: float
    expires_at: float | None
    last_used_at: float | None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(secret: str) -> bool:
    return secret.startswith(PREFIX)


class AccessTokens:
    def __init__(self, engine: AsyncEngine, accounts: Accounts) -> None:
        self.engine = engine
        self.accounts = accounts

    async def create(
        self,
        user: User,
        name: str,
        scopes: set[str],
        expires_in: float | None = None,
        kind: str = PERSONAL,
    ) -> str:
        """A new token; its plain text exists only in the return value."""
        if not scopes or not scopes <= set(SCOPES):
            raise AccountError(f"scopes must be some of {', '.join(SCOPES)}")
        if not name.strip() or len(name) > 100:
            raise AccountError("token name must be 1 to 100 characters")
        if expires_in is not None and expires_in <= 0:
            raise AccountError("expiry must be in the future")
        token = PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        async with begin(self.engine) as conn:
            await conn.execute(
                s.access_tokens.insert().values(
                    user_id=user.id,
                    kind=kind,
                    name=name.strip(),
                    token_hash=_hash(token),
                    scopes=",".join(sorted(scopes)),
                    created_at=now,
                    expires_at=None if expires_in is None else now + expires_in,
                )
            )
        return token

    async def verify(
        self, token: str, kind: str | None = None
    ) -> tuple[User, frozenset[str]] | None:
        """The token's user and scopes, if it is known, unexpired and of `kind` (any if None)."""
        if not looks_like_token(token):
            return None
        t = s.access_tokens
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        t.c.id, t.c.user_id, t.c.kind, t.c.scopes, t.c.expires_at, t.c.last_used_at
                    ).where(t.c.token_hash == _hash(token))
                )
            ).first()
        now = time.time()
        if row is None or (kind is not None and row.kind != kind):
            return None
        if row.expires_at is not None and row.expires_at < now:
            return None
        user = await self.accounts.user_by_id(row.user_id)
        if user is None or not user.is_active:
            return None
        if row.last_used_at is None or row.last_used_at < now - TOUCH_INTERVAL:
            async with begin(self.engine) as conn:
                await conn.execute(update(t).where(t.c.id == row.id).values(last_used_at=now))
        return user, frozenset(row.scopes.split(","))

    async def list(self, user: User) -> list[TokenInfo]:
        t = s.access_tokens
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        t.c.id,
                        t.c.name,
                        t.c.scopes,
                        t.c.created_at,
                        t.c.expires_at,
                        t.c.last_used_at,
                    )
                    .where(t.c.user_id == user.id, t.c.kind == PERSONAL)
                    .order_by(t.c.created_at.desc())
                )
            ).all()
        return [
            TokenInfo(
                r.id,
                r.name,
                frozenset(r.scopes.split(",")),
                r.created_at,
                r.expires_at,
                r.last_used_at,
            )
            for r in rows
        ]

    async def revoke(self, user: User, token_id: int) -> bool:
        t = s.access_tokens
        async with begin(self.engine) as conn:
            result = await conn.execute(delete(t).where(t.c.id == token_id, t.c.user_id == user.id))
        return result.rowcount > 0
