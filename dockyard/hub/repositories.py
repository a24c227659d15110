"""Repositories as the hub shows them: visibility, description, README, stars, pulls, tags."""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from dockyard.db import schema as s
from dockyard.db.engine import begin
from dockyard.hub.accounts import AccountError, delete_repository_rows
from dockyard.hub.names import OFFICIAL, canonical_repository, display_name
from dockyard.hub.permissions import Permissions, Principal
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest
from dockyard.oci.names import is_repository_name
from dockyard.registry.context import Registry

DESCRIPTION_LIMIT = 100
README_LIMIT = 1 << 20


@dataclass(frozen=True, slots=True)
class RepositoryInfo:
    id: int
    name: str
    is_private: bool
    description: str
    readme: str
    pull_count: int
    star_count: int
    last_pushed: float | None
    is_automated: bool
    created_at: float

    @property
    def display_name(self) -> str:
        return display_name(self.name)

    @property
    def is_official(self) -> bool:
        return self.name.startswith(OFFICIAL + "/")

    @property
    def namespace(self) -> str:
        return self.name.split("/", 1)[0]


@dataclass
class TagInfo:
    name: str
    digest: str
    media_type: str
    size: int
    platforms: list[str] = field(default_factory=list)
    pushed_at: float = 0.0


def _star_count():
    return (
        select(func.count())
        .where(s.stars.c.repository_id == s.repositories.c.id)
        .correlate(s.repositories)
        .scalar_subquery()
    )


_COLUMNS = (
    s.repositories.c.id,
    s.repositories.c.name,
    s.repositories.c.is_private,
    s.repositories.c.description,
    s.repositories.c.readme,
    s.repositories.c.pull_count,
    _star_count().label("star_count"),
    s.repositories.c.last_pushed,
    s.repositories.c.is_automated,
    s.repositories.c.created_at,
)


class Repositories:
    def __init__(self, registry: Registry, permissions: Permissions) -> None:
        self.registry = registry
        self.engine = registry.meta.engine
        self.permissions = permissions

    async def get(self, name: str) -> RepositoryInfo | None:
        query = select(*_COLUMNS).where(s.repositories.c.name == canonical_repository(name))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return RepositoryInfo(*row) if row else None

    async def get_by_id(self, repository_id: int) -> RepositoryInfo | None:
        query = select(*_COLUMNS).where(s.repositories.c.id == repository_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return RepositoryInfo(*row) if row else None

    async def visible(self, principal: Principal, name: str) -> RepositoryInfo | None:
        """The repository if it exists and `principal` may see it; None is the same answer
        for both cases, so a private repository's existence does not leak."""
        info = await self.get(name)
        if info is None or not await self.permissions.can_read(principal, info.name):
            return None
        return info

    async def create(
        self, principal: Principal, name: str, *, is_private: bool, description: str = ""
    ) -> RepositoryInfo:
        name = canonical_repository(name)
        if not is_repository_name(name) or name.count("/") != 1:
            raise AccountError("repository name must be NAMESPACE/NAME in lowercase")
        if "push" not in await self.permissions.actions(principal, name):
            raise AccountError("you cannot create repositories in that namespace")
        _check_description(description)
        try:
            async with begin(self.engine) as conn:
                await conn.execute(
                    s.repositories.insert().values(
                        name=name,
                        created_at=time.time(),
                        is_private=is_private,
                        description=description,
                    )
                )
        except IntegrityError:
            raise AccountError("that repository already exists") from None
        self.registry.meta.changes.bump()
        info = await self.get(name)
        assert info is not None
        return info

    async def update(
        self,
        name: str,
        *,
        is_private: bool | None = None,
        description: str | None = None,
        readme: str | None = None,
    ) -> None:
        values: dict[str, object] = {}
        if is_private is not None:
            values["is_private"] = is_private
        if description is not None:
            _check_description(description)
            values["description"] = description
        if readme is not None:
            if len(readme) > README_LIMIT:
                raise AccountError("the README is larger than 1 MiB")
            values["readme"] = readme
        if not values:
            return
        async with begin(self.engine) as conn:
            await conn.execute(
                update(s.repositories)
                .where(s.repositories.c.name == canonical_repository(name))
                .values(**values)
            )
        self.registry.meta.changes.bump()

    async def delete(self, name: str) -> None:
        async with begin(self.engine) as conn:
            ids = list(
                (
                    await conn.execute(
                        select(s.repositories.c.id).where(
                            s.repositories.c.name == canonical_repository(name)
                        )
                    )
                ).scalars()
            )
            await delete_repository_rows(conn, ids)
        self.registry.meta.changes.bump()

    async def delete_tag(self, name: str, tag: str) -> bool:
        return await self.registry.meta.delete_tag(canonical_repository(name), tag)

    async def set_automated(self, name: str, automated: bool) -> None:
        async with begin(self.engine) as conn:
            await conn.execute(
                update(s.repositories)
                .where(s.repositories.c.name == canonical_repository(name))
                .values(is_automated=automated)
            )

    async def set_collaborator(self, name: str, user_id: int, role: str | None) -> None:
        info = await self.get(name)
        if info is None:
            raise AccountError("no such repository")
        if role is not None and role not in ("read", "write", "admin"):
            raise AccountError("role must be read, write or admin")
        async with begin(self.engine) as conn:
            await conn.execute(
                delete(s.collaborators).where(
                    s.collaborators.c.repository_id == info.id,
                    s.collaborators.c.user_id == user_id,
                )
            )
            if role is not None:
                await conn.execute(
                    s.collaborators.insert().values(
                        repository_id=info.id, user_id=user_id, role=role
                    )
                )

    async def collaborators(self, name: str) -> list[tuple[str, str]]:
        info = await self.get(name)
        if info is None:
            return []
        query = (
            select(s.namespaces.c.name, s.collaborators.c.role)
            .join(s.users, s.users.c.id == s.collaborators.c.user_id)
            .join(s.namespaces, s.namespaces.c.id == s.users.c.namespace_id)
            .where(s.collaborators.c.repository_id == info.id)
            .order_by(s.namespaces.c.name)
        )
        async with self.engine.connect() as conn:
            return [(r.name, r.role) for r in await conn.execute(query)]

    async def star(self, user_id: int, name: str, starred: bool) -> None:
        info = await self.get(name)
        if info is None:
            raise AccountError("no such repository")
        async with begin(self.engine) as conn:
            await conn.execute(
                delete(s.stars).where(
                    s.stars.c.user_id == user_id, s.stars.c.repository_id == info.id
                )
            )
            if starred:
                await conn.execute(s.stars.insert().values(user_id=user_id, repository_id=info.id))

    async def is_starred(self, user_id: int, repository_id: int) -> bool:
        query = select(s.stars.c.user_id).where(
            s.stars.c.user_id == user_id, s.stars.c.repository_id == repository_id
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def tags(self, name: str) -> list[TagInfo]:
        """Every tag with its digest, total size, platforms and push time, newest first."""
        name = canonical_repository(name)
        query = (
            select(s.tags.c.name, s.tags.c.digest, s.tags.c.updated_at, s.manifests.c.media_type)
            .join(s.repositories, s.repositories.c.id == s.tags.c.repository_id)
            .join(
                s.manifests,
                (s.manifests.c.repository_id == s.tags.c.repository_id)
                & (s.manifests.c.digest == s.tags.c.digest),
            )
            .where(s.repositories.c.name == name)
            .order_by(s.tags.c.updated_at.desc(), s.tags.c.name)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        result = []
        for row in rows:
            tag = TagInfo(row.name, row.digest, row.media_type, 0, pushed_at=row.updated_at)
            await self._describe(tag)
            result.append(tag)
        return result

    async def _describe(self, tag: TagInfo) -> None:
        store = self.registry.store
        raw = await store.get_bytes(Digest.parse(tag.digest))
        if raw is None:
            return
        body = json.loads(raw)
        if tag.media_type in mt.INDEXES:
            for child in body.get("manifests", []):
                platform = child.get("platform") or {}
                if platform.get("os") and platform.get("os") != "unknown":
                    tag.platforms.append(_platform(platform))
                child_raw = await store.get_bytes(Digest.parse(child["digest"]))
                if child_raw is not None:
                    child_body = json.loads(child_raw)
                    tag.size = max(tag.size, _image_size(child_body))
            return
        tag.size = _image_size(body)
        config = body.get("config") or {}
        if config.get("size", 0) < 1 << 20 and "digest" in config:
            data = await store.get_bytes(Digest.parse(config["digest"]))
            try:
                parsed = json.loads(data) if data else {}
            except ValueError:
                parsed = {}
            if isinstance(parsed, dict) and parsed.get("os"):
                tag.platforms.append(_platform(parsed))

    async def search(
        self, principal: Principal, query: str, limit: int, offset: int = 0
    ) -> tuple[int, list[RepositoryInfo]]:
        """Repositories matching `query` that `principal` may see, best first."""
        term = query.strip().lower()
        pattern = f"%{term}%"
        select_query = select(*_COLUMNS).where(
            or_(s.repositories.c.name.like(pattern), s.repositories.c.description.like(pattern))
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select_query.limit(5000))).all()
        found = [RepositoryInfo(*row) for row in rows]
        allowed = await asyncio.gather(
            *(self.permissions.can_read(principal, info.name) for info in found)
        )
        ranked = sorted(
            (info for info, ok in zip(found, allowed, strict=True) if ok),
            key=lambda info: (-_score(info, term), info.name),
        )
        return len(ranked), ranked[offset : offset + limit]

    async def explore(self, principal: Principal, limit: int = 50) -> list[RepositoryInfo]:
        return (await self.search(principal, "", limit))[1]

    async def in_namespace(self, principal: Principal, namespace: str) -> list[RepositoryInfo]:
        query = (
            select(*_COLUMNS)
            .where(s.repositories.c.name.like(f"{namespace}/%"))
            .order_by(s.repositories.c.name)
        )
        async with self.engine.connect() as conn:
            found = [RepositoryInfo(*row) for row in await conn.execute(query)]
        return [info for info in found if await self.permissions.can_read(principal, info.name)]


def _score(info: RepositoryInfo, term: str) -> float:
    short = info.name.split("/", 1)[-1]
    score = 0.0
    if term:
        if short == term or info.display_name == term:
            score += 100
        elif short.startswith(term):
            score += 50
        elif term in info.name:
            score += 25
        else:
            score += 5
    if info.is_official:
        score += 20
    return score + 10 * math.log1p(info.star_count) + 3 * math.log1p(info.pull_count)


def _platform(value: dict[str, object]) -> str:
    parts = [str(value.get("os", "")), str(value.get("architecture", ""))]
    if value.get("variant"):
        parts.append(str(value["variant"]))
    return "/".join(parts)


def _image_size(body: dict[str, object]) -> int:
    layers = body.get("layers") or body.get("blobs") or []
    config = body.get("config") or {}
    total = sum(int(layer.get("size", 0)) for layer in layers if isinstance(layer, dict))
    return total + int(config.get("size", 0) if isinstance(config, dict) else 0)


def _check_description(description: str) -> None:
    if len(description) > DESCRIPTION_LIMIT:
        raise AccountError(f"the description is longer than {DESCRIPTION_LIMIT} characters")


class PullCounter:
    """Counts pulls in memory and adds them to the database in batches, off the hot path."""

    def __init__(self, registry: Registry) -> None:
        self.engine = registry.meta.engine
        self._pending: dict[str, int] = {}

    def count(self, name: str) -> None:
        self._pending[name] = self._pending.get(name, 0) + 1

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        if not pending:
            return
        async with begin(self.engine) as conn:
            for name, count in pending.items():
                await conn.execute(
                    update(s.repositories)
                    .where(s.repositories.c.name == name)
                    .values(pull_count=s.repositories.c.pull_count + count)
                )

    async def run(self, interval: float = 2.0) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.flush()
