"""Linked git sources: where a repository's code lives, its credentials, and its build rules."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dockyard.builds.rules import Rule, RuleError
from dockyard.builds.secrets import SecretBox
from dockyard.db import schema as s
from dockyard.db.engine import begin

AUTH_KINDS = ("none", "token", "ssh")
MAX_RULES = 50
_REMOTE = re.compile(r"^(https?|ssh|git)://[^\s/]+(/\S*)?$|^[\w.-]+@[\w.-]+:\S+$")


class SourceError(ValueError):
    """A source that cannot be linked as given; the message says why."""


@dataclass(frozen=True)
class Source:
    id: int
    repository_id: int
    url: str
    auth_kind: str
    username: str | None
    public_key: str | None


@dataclass(frozen=True)
class Linked:
    """What linking shows once: the secrets the git host and CI need."""

    source: Source
    webhook_secret: str
    trigger_token: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _deploy_key() -> tuple[str, str]:
    """A new Ed25519 key pair: (OpenSSH private key, `ssh-ed25519 …` public key)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return private, f"{public} dockyard-deploy-key"


def check_url(url: str, allow_local: bool) -> None:
    if len(url) > 2048 or any(c in url for c in "\0\n\r"):
        raise SourceError("the git URL is not valid")
    if url.startswith("-"):
        raise SourceError("the git URL must not start with '-'")
    if _REMOTE.match(url):
        return
    if url.startswith("/") or url.startswith("file://"):
        if allow_local:
            return
        raise SourceError("local paths are disabled on this hub (allow_local_sources)")
    raise SourceError("use an https://, ssh://, git:// or user@host:path git URL")


_SOURCE_COLUMNS = (
    s.build_sources.c.id,
    s.build_sources.c.repository_id,
    s.build_sources.c.url,
    s.build_sources.c.auth_kind,
    s.build_sources.c.username,
    s.build_sources.c.public_key,
)


class Sources:
    def __init__(self, engine: AsyncEngine, box: SecretBox, allow_local: bool = False) -> None:
        self.engine = engine
        self.box = box
        self.allow_local = allow_local

    async def link(
        self,
        repository_id: int,
        url: str,
        auth_kind: str = "none",
        username: str | None = None,
        secret: str | None = None,
    ) -> Linked:
        check_url(url, self.allow_local)
        if auth_kind not in AUTH_KINDS:
            raise SourceError(f"auth must be one of {', '.join(AUTH_KINDS)}")
        public_key = None
        if auth_kind == "token":
            if not username or not secret:
                raise SourceError("token auth needs a username and a token")
        elif auth_kind == "ssh":
            secret, public_key = _deploy_key()
        else:
            username = secret = None
        webhook_secret = secrets.token_hex(20)
        trigger_token = secrets.token_urlsafe(24)
        async with begin(self.engine) as conn:
            await conn.execute(
                delete(s.build_sources).where(s.build_sources.c.repository_id == repository_id)
            )
            result = await conn.execute(
                s.build_sources.insert().values(
                    repository_id=repository_id,
                    url=url,
                    auth_kind=auth_kind,
                    username=username,
                    secret=self.box.seal(secret) if secret else None,
                    public_key=public_key,
                    webhook_secret=self.box.seal(webhook_secret),
                    trigger_token_hash=token_hash(trigger_token),
                    created_at=time.time(),
                )
            )
        source = Source(
            result.inserted_primary_key[0], repository_id, url, auth_kind, username, public_key
        )
        return Linked(source, webhook_secret, trigger_token)

    async def unlink(self, repository_id: int) -> bool:
        async with begin(self.engine) as conn:
            result = await conn.execute(
                delete(s.build_sources).where(s.build_sources.c.repository_id == repository_id)
            )
        return result.rowcount > 0

    async def _one(self, where: object) -> Source | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(*_SOURCE_COLUMNS).where(where))).first()
        return Source(*row) if row else None

    async def for_repository(self, repository_id: int) -> Source | None:
        return await self._one(s.build_sources.c.repository_id == repository_id)

    async def by_id(self, source_id: int) -> Source | None:
        return await self._one(s.build_sources.c.id == source_id)

    async def by_trigger_token(self, token: str) -> Source | None:
        return await self._one(s.build_sources.c.trigger_token_hash == token_hash(token))

    async def _sealed(self, source_id: int, column: str) -> str | None:
        async with self.engine.connect() as conn:
            value = (
                await conn.execute(
                    select(s.build_sources.c[column]).where(s.build_sources.c.id == source_id)
                )
            ).scalar()
        return self.box.open(value) if value else None

    async def webhook_secret(self, source_id: int) -> str | None:
        return await self._sealed(source_id, "webhook_secret")

    async def credential(self, source_id: int) -> str | None:
        """The token or private deploy key, for the worker that clones; never for display."""
        return await self._sealed(source_id, "secret")

    async def rules(self, source_id: int) -> list[Rule]:
        r = s.build_rules
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(r).where(r.c.source_id == source_id).order_by(r.c.position)
                )
            ).all()
        return [
            Rule(
                row.source_type,
                row.source_name,
                row.docker_tag,
                row.dockerfile,
                row.context,
                row.autobuild,
                row.cache,
                row.id,
            )
            for row in rows
        ]

    async def set_rules(self, source_id: int, rules: list[Rule]) -> list[Rule]:
        if len(rules) > MAX_RULES:
            raise RuleError(f"at most {MAX_RULES} build rules")
        for rule in rules:
            rule.check()
        async with begin(self.engine) as conn:
            await conn.execute(delete(s.build_rules).where(s.build_rules.c.source_id == source_id))
            for position, rule in enumerate(rules):
                await conn.execute(
                    s.build_rules.insert().values(
                        source_id=source_id,
                        position=position,
                        source_type=rule.source_type,
                        source_name=rule.source_name,
                        docker_tag=rule.docker_tag,
                        dockerfile=rule.dockerfile,
                        context=rule.context,
                        autobuild=rule.autobuild,
                        cache=rule.cache,
                    )
                )
        return await self.rules(source_id)
