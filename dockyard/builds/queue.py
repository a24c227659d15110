"""The build queue in the database: leased by workers, fenced so a build finishes once.

A worker leases a queued build and gets a lease token; every heartbeat, log line and the
final report must carry it. A worker that stops heart-beating loses the lease, the build
goes back to the queue, and the old token is worthless: a second worker's run is the only
one that can complete it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from dockyard.db import schema as s
from dockyard.db.engine import begin

QUEUED, CLONING, BUILDING, PUSHING = "queued", "cloning", "building", "pushing"
SUCCESS, FAILED, CANCELLED, ERROR = "success", "failed", "cancelled", "error"
ACTIVE = (CLONING, BUILDING, PUSHING)
FINISHED = (SUCCESS, FAILED, CANCELLED, ERROR)
MAX_ATTEMPTS = 3
MAX_LOG_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Build:
    id: int
    repository_id: int
    namespace: str
    rule_id: int | None
    source_type: str
    source_ref: str
    commit: str | None
    commit_message: str | None
    docker_tags: tuple[str, ...]
    dockerfile: str
    context: str
    cache: bool
    trigger: str
    status: str
    attempt: int
    worker: str | None
    error: str | None
    failed_step: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None


@dataclass(frozen=True)
class Lease:
    build: Build
    token: str


_COLUMNS = [c for c in s.builds.c if c.name not in ("lease_token", "lease_expires")]


def _build(row: object) -> Build:
    values = dict(row._mapping)  # type: ignore[attr-defined]
    values["docker_tags"] = tuple(t for t in values["docker_tags"].split(",") if t)
    return Build(**values)


class BuildQueue:
    def __init__(self, engine: AsyncEngine, namespace_limit: int = 2) -> None:
        self.engine = engine
        self.namespace_limit = namespace_limit
        self.changed = asyncio.Event()
        """Set when this process queued or ended a build: its idle workers look again."""

    async def enqueue(
        self,
        *,
        repository_id: int,
        namespace: str,
        source_type: str,
        source_ref: str,
        docker_tags: list[str],
        dockerfile: str,
        context: str,
        cache: bool,
        trigger: str,
        rule_id: int | None = None,
        commit: str | None = None,
        commit_message: str | None = None,
    ) -> int:
        """A new queued build; a duplicate of one still queued returns that one instead."""
        b = s.builds
        async with begin(self.engine) as conn:
            existing = (
                await conn.execute(
                    select(b.c.id).where(
                        b.c.repository_id == repository_id,
                        b.c.status == QUEUED,
                        b.c.source_type == source_type,
                        b.c.source_ref == source_ref,
                        b.c.docker_tags == ",".join(docker_tags),
                        b.c.commit.is_(None) if commit is None else b.c.commit == commit,
                    )
                )
            ).scalar()
            if existing is not None:
                return existing
            result = await conn.execute(
                b.insert().values(
                    repository_id=repository_id,
                    namespace=namespace,
                    rule_id=rule_id,
                    source_type=source_type,
                    source_ref=source_ref,
                    commit=commit,
                    commit_message=(commit_message or "")[:4000] or None,
                    docker_tags=",".join(docker_tags),
                    dockerfile=dockerfile,
                    context=context,
                    cache=cache,
                    trigger=trigger,
                    status=QUEUED,
                    created_at=time.time(),
                )
            )
        self.changed.set()
        return result.inserted_primary_key[0]

    async def get(self, build_id: int) -> Build | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(*_COLUMNS).where(s.builds.c.id == build_id))).first()
        return _build(row) if row else None

    async def for_repository(self, repository_id: int, limit: int = 50) -> list[Build]:
        query = (
            select(*_COLUMNS)
            .where(s.builds.c.repository_id == repository_id)
            .order_by(s.builds.c.id.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [_build(row) for row in await conn.execute(query)]

    async def lease(self, worker: str, seconds: float) -> Lease | None:
        """The oldest queued build whose namespace is under its concurrency limit and whose
        tags no running build is about to push: a tag's builds run in the order of their
        pushes, so `latest` ends at the newest commit."""
        await self.requeue_expired()
        b = s.builds
        running = s.builds.alias("running")
        pushing_same_tags = (
            select(running.c.id)
            .where(
                running.c.repository_id == b.c.repository_id,
                running.c.docker_tags == b.c.docker_tags,
                running.c.status.in_(ACTIVE),
            )
            .exists()
        )
        active = (
            select(b.c.namespace, func.count().label("running"))
            .where(b.c.status.in_(ACTIVE))
            .group_by(b.c.namespace)
        )
        for _ in range(5):
            async with begin(self.engine) as conn:
                busy = {
                    row.namespace
                    for row in await conn.execute(active)
                    if row.running >= self.namespace_limit
                }
                candidate = (
                    await conn.execute(
                        select(b.c.id)
                        .where(
                            b.c.status == QUEUED,
                            b.c.namespace.not_in(busy or {""}),
                            ~pushing_same_tags,
                        )
                        .order_by(b.c.id)
                        .limit(1)
                    )
                ).scalar()
                if candidate is None:
                    return None
                token = secrets.token_hex(16)
                now = time.time()
                claimed = await conn.execute(
                    update(b)
                    .where(b.c.id == candidate, b.c.status == QUEUED)
                    .values(
                        status=CLONING,
                        lease_token=token,
                        lease_expires=now + seconds,
                        worker=worker[:255],
                        attempt=b.c.attempt + 1,
                        started_at=now,
                        error=None,
                        failed_step=None,
                    )
                )
            if claimed.rowcount == 1:
                build = await self.get(candidate)
                assert build is not None
                return Lease(build, token)
        return None

    def _held(self, build_id: int, token: str):  # type: ignore[no-untyped-def]
        b = s.builds
        return and_(b.c.id == build_id, b.c.lease_token == token, b.c.status.in_(ACTIVE))

    async def heartbeat(
        self, build_id: int, token: str, seconds: float, status: str | None = None
    ) -> bool:
        """Extend the lease; False means it is gone (cancelled, or expired and re-leased)."""
        values: dict[str, object] = {"lease_expires": time.time() + seconds}
        if status in ACTIVE:
            values["status"] = status
        async with begin(self.engine) as conn:
            result = await conn.execute(
                update(s.builds).where(self._held(build_id, token)).values(**values)
            )
        return result.rowcount == 1

    async def append_log(self, build_id: int, text: str, token: str | None = None) -> bool:
        """Append to the build's log (from its lease holder, when a token is given)."""
        if not text:
            return True
        async with begin(self.engine) as conn:
            if token is not None:
                held = (
                    await conn.execute(select(s.builds.c.id).where(self._held(build_id, token)))
                ).first()
                if held is None:
                    return False
            seq = (
                await conn.execute(
                    select(func.coalesce(func.max(s.build_logs.c.seq), 0)).where(
                        s.build_logs.c.build_id == build_id
                    )
                )
            ).scalar_one()
            for offset in range(0, len(text), MAX_LOG_CHUNK):
                seq += 1
                await conn.execute(
                    s.build_logs.insert().values(
                        build_id=build_id, seq=seq, text=text[offset : offset + MAX_LOG_CHUNK]
                    )
                )
        return True

    async def logs(self, build_id: int, after: int = 0) -> list[tuple[int, str]]:
        query = (
            select(s.build_logs.c.seq, s.build_logs.c.text)
            .where(s.build_logs.c.build_id == build_id, s.build_logs.c.seq > after)
            .order_by(s.build_logs.c.seq)
        )
        async with self.engine.connect() as conn:
            return [(row.seq, row.text) for row in await conn.execute(query)]

    async def finish(
        self,
        build_id: int,
        token: str,
        status: str,
        error: str | None = None,
        failed_step: str | None = None,
    ) -> bool:
        """Record the outcome; only the current lease holder can, and only once."""
        if status not in (SUCCESS, FAILED, ERROR):
            raise ValueError(f"a worker cannot finish a build as {status!r}")
        async with begin(self.engine) as conn:
            result = await conn.execute(
                update(s.builds)
                .where(self._held(build_id, token))
                .values(
                    status=status,
                    error=(error or "")[:4000] or None,
                    failed_step=(failed_step or "")[:1000] or None,
                    finished_at=time.time(),
                    lease_token=None,
                    lease_expires=None,
                )
            )
        self.changed.set()
        return result.rowcount == 1

    async def cancel(self, build_id: int) -> bool:
        b = s.builds
        async with begin(self.engine) as conn:
            result = await conn.execute(
                update(b)
                .where(b.c.id == build_id, b.c.status.in_((QUEUED, *ACTIVE)))
                .values(
                    status=CANCELLED, finished_at=time.time(), lease_token=None, lease_expires=None
                )
            )
        self.changed.set()
        return result.rowcount == 1

    async def retry(self, build_id: int) -> int | None:
        """A new build of the same source and tags, as Docker Hub's Retry does."""
        old = await self.get(build_id)
        if old is None or old.status not in FINISHED:
            return None
        return await self.enqueue(
            repository_id=old.repository_id,
            namespace=old.namespace,
            source_type=old.source_type,
            source_ref=old.source_ref,
            docker_tags=list(old.docker_tags),
            dockerfile=old.dockerfile,
            context=old.context,
            cache=old.cache,
            trigger="retry",
            rule_id=old.rule_id,
            commit=old.commit,
            commit_message=old.commit_message,
        )

    async def requeue_expired(self) -> None:
        """Builds whose worker stopped heart-beating go back to the queue (or end in error)."""
        b = s.builds
        now = time.time()
        expired = and_(b.c.status.in_(ACTIVE), b.c.lease_expires < now)
        async with begin(self.engine) as conn:
            await conn.execute(
                update(b)
                .where(expired, b.c.attempt >= MAX_ATTEMPTS)
                .values(
                    status=ERROR,
                    error="the build's workers stopped responding too many times",
                    finished_at=now,
                    lease_token=None,
                    lease_expires=None,
                )
            )
            await conn.execute(
                update(b)
                .where(expired)
                .values(status=QUEUED, lease_token=None, lease_expires=None, worker=None)
            )
