"""Every metadata read and write the registry makes, on SQLAlchemy Core."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dockyard.db import schema as s
from dockyard.db.engine import begin, insert_ignoring_conflicts, upsert
from dockyard.oci.digest import Digest
from dockyard.oci.manifest import Manifest
from dockyard.registry.changes import ChangeStamp

TOUCH_INTERVAL = 60.0
UPLOAD_OWNERS_KEPT = 4096


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    digest: str
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class Referrer:
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str] | None


class MissingReferences(Exception):
    def __init__(self, blobs: list[str], manifests: list[str]) -> None:
        super().__init__("manifest references content the repository does not have")
        self.blobs = blobs
        self.manifests = manifests


class Metadata:
    def __init__(
        self,
        engine: AsyncEngine,
        changes: ChangeStamp,
        repository_defaults: dict[str, object] | None = None,
    ) -> None:
        self.engine = engine
        self.changes = changes
        self.repository_defaults = repository_defaults or {}
        self._upload_owners: OrderedDict[str, str] = OrderedDict()
        """Uploads this process started, and their repository: a PATCH or PUT that lands
        here needs no query (one that lands on another process asks the database)."""

    async def _repository_id(self, conn: AsyncConnection, name: str) -> int | None:
        result = await conn.execute(
            select(s.repositories.c.id).where(s.repositories.c.name == name)
        )
        return result.scalar()

    async def _ensure_repository(self, conn: AsyncConnection, name: str) -> int:
        await conn.execute(
            insert_ignoring_conflicts(self.engine, s.repositories).values(
                name=name, created_at=time.time(), **self.repository_defaults
            )
        )
        repository_id = await self._repository_id(conn, name)
        assert repository_id is not None
        return repository_id

    async def repository_exists(self, name: str) -> bool:
        async with self.engine.connect() as conn:
            return await self._repository_id(conn, name) is not None

    async def blob_size(self, name: str, digest: Digest) -> int | None:
        """The size of a blob linked into repository `name`, or None."""
        query = (
            select(s.blobs.c.size)
            .select_from(
                s.repositories.join(s.repository_blobs).join(
                    s.blobs, s.blobs.c.digest == s.repository_blobs.c.digest
                )
            )
            .where(s.repositories.c.name == name, s.repository_blobs.c.digest == str(digest))
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).scalar()

    async def repositories_with_blob(self, digest: Digest, limit: int = 20) -> list[str]:
        query = (
            select(s.repositories.c.name)
            .join(s.repository_blobs)
            .where(s.repository_blobs.c.digest == str(digest))
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    async def link_blob(
        self, name: str, digest: Digest, size: int, finished_upload: str | None = None
    ) -> None:
        """Record the blob and make it part of repository `name`, in the same transaction
        as forgetting the upload session it came from."""
        now = time.time()
        async with begin(self.engine) as conn:
            if finished_upload is not None:
                await self._delete_upload(conn, finished_upload)
            repository_id = await self._ensure_repository(conn, name)
            await conn.execute(
                upsert(self.engine, s.blobs, ["digest"], ["last_used"]).values(
                    digest=str(digest), size=size, created_at=now, last_used=now
                )
            )
            await conn.execute(
                insert_ignoring_conflicts(self.engine, s.repository_blobs).values(
                    repository_id=repository_id, digest=str(digest)
                )
            )

    async def touch_blob(self, digest: Digest) -> None:
        """Note that a client relies on the blob now, so garbage collection spares it."""
        now = time.time()
        async with begin(self.engine) as conn:
            await conn.execute(
                update(s.blobs)
                .where(s.blobs.c.digest == str(digest), s.blobs.c.last_used < now - TOUCH_INTERVAL)
                .values(last_used=now)
            )

    async def unlink_blob(self, name: str, digest: Digest) -> bool:
        async with begin(self.engine) as conn:
            repository_id = await self._repository_id(conn, name)
            if repository_id is None:
                return False
            result = await conn.execute(
                delete(s.repository_blobs).where(
                    s.repository_blobs.c.repository_id == repository_id,
                    s.repository_blobs.c.digest == str(digest),
                )
            )
            return result.rowcount > 0

    async def create_upload(self, upload_id: str, name: str) -> None:
        async with begin(self.engine) as conn:
            await conn.execute(
                s.uploads.insert().values(id=upload_id, repository=name, created_at=time.time())
            )
        self._upload_owners[upload_id] = name
        while len(self._upload_owners) > UPLOAD_OWNERS_KEPT:
            self._upload_owners.popitem(last=False)

    async def upload_repository(self, upload_id: str) -> str | None:
        if upload_id in self._upload_owners:
            return self._upload_owners[upload_id]
        async with self.engine.connect() as conn:
            result = await conn.execute(
                select(s.uploads.c.repository).where(s.uploads.c.id == upload_id)
            )
            return result.scalar()

    async def delete_upload(self, upload_id: str) -> None:
        async with begin(self.engine) as conn:
            await self._delete_upload(conn, upload_id)

    async def _delete_upload(self, conn: AsyncConnection, upload_id: str) -> None:
        self._upload_owners.pop(upload_id, None)
        await conn.execute(delete(s.uploads).where(s.uploads.c.id == upload_id))

    async def put_manifest(
        self,
        name: str,
        digest: Digest,
        size: int,
        manifest: Manifest,
        tags: list[str],
    ) -> None:
        """Store the manifest's metadata and point `tags` at it, once every reference exists."""
        blob_digests = sorted({str(d.digest) for d in manifest.blobs if d.distributable})
        child_digests = sorted({str(d.digest) for d in manifest.manifests})
        async with begin(self.engine) as conn:
            repository_id = await self._ensure_repository(conn, name)
            missing_blobs = await self._missing(
                conn, s.repository_blobs, repository_id, blob_digests
            )
            missing_children = await self._missing(conn, s.manifests, repository_id, child_digests)
            if missing_blobs or missing_children:
                raise MissingReferences(missing_blobs, missing_children)
            now = time.time()
            await conn.execute(
                insert_ignoring_conflicts(self.engine, s.manifests).values(
                    repository_id=repository_id,
                    digest=str(digest),
                    media_type=manifest.media_type,
                    size=size,
                    artifact_type=manifest.artifact_type,
                    subject=str(manifest.subject.digest) if manifest.subject else None,
                    annotations=json.dumps(manifest.annotations) if manifest.annotations else None,
                    created_at=now,
                )
            )
            references = [
                {
                    "repository_id": repository_id,
                    "manifest": str(digest),
                    "target": t,
                    "is_manifest": is_manifest,
                }
                for targets, is_manifest in ((blob_digests, 0), (child_digests, 1))
                for t in targets
            ]
            if references:
                await conn.execute(
                    insert_ignoring_conflicts(self.engine, s.manifest_references), references
                )
            if tags:
                await conn.execute(
                    update(s.repositories)
                    .where(s.repositories.c.id == repository_id)
                    .values(last_pushed=now)
                )
            for tag in tags:
                await conn.execute(
                    upsert(
                        self.engine, s.tags, ["repository_id", "name"], ["digest", "updated_at"]
                    ).values(
                        repository_id=repository_id, name=tag, digest=str(digest), updated_at=now
                    )
                )
        self.changes.bump()

    async def _missing(
        self, conn: AsyncConnection, table: s.Table, repository_id: int, digests: list[str]
    ) -> list[str]:
        if not digests:
            return []
        result = await conn.execute(
            select(table.c.digest).where(
                table.c.repository_id == repository_id, table.c.digest.in_(digests)
            )
        )
        present = set(result.scalars())
        return [d for d in digests if d not in present]

    async def resolve(self, name: str, reference: str, by_digest: bool) -> ManifestRecord | None:
        """The manifest a tag or digest names in repository `name`."""
        m = s.manifests
        query = select(m.c.digest, m.c.media_type, m.c.size).join(
            s.repositories, s.repositories.c.id == m.c.repository_id
        )
        if by_digest:
            query = query.where(s.repositories.c.name == name, m.c.digest == reference)
        else:
            query = query.join(
                s.tags,
                and_(s.tags.c.repository_id == m.c.repository_id, s.tags.c.digest == m.c.digest),
            ).where(s.repositories.c.name == name, s.tags.c.name == reference)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return ManifestRecord(*row) if row else None

    async def delete_manifest(self, name: str, digest: str) -> bool:
        """Remove the manifest and every tag on it from the repository."""
        async with begin(self.engine) as conn:
            repository_id = await self._repository_id(conn, name)
            if repository_id is None:
                return False
            in_repo = {"repository_id": repository_id}
            result = await conn.execute(delete(s.manifests).filter_by(**in_repo, digest=digest))
            if not result.rowcount:
                return False
            await conn.execute(delete(s.tags).filter_by(**in_repo, digest=digest))
            await conn.execute(delete(s.manifest_references).filter_by(**in_repo, manifest=digest))
        self.changes.bump()
        return True

    async def delete_tag(self, name: str, tag: str) -> bool:
        async with begin(self.engine) as conn:
            repository_id = await self._repository_id(conn, name)
            if repository_id is None:
                return False
            result = await conn.execute(
                delete(s.tags).filter_by(repository_id=repository_id, name=tag)
            )
        self.changes.bump()
        return result.rowcount > 0

    async def tags(self, name: str, limit: int | None, last: str | None) -> list[str] | None:
        async with self.engine.connect() as conn:
            repository_id = await self._repository_id(conn, name)
            if repository_id is None:
                return None
            query = select(s.tags.c.name).where(s.tags.c.repository_id == repository_id)
            if last:
                query = query.where(s.tags.c.name > last)
            query = query.order_by(s.tags.c.name)
            if limit is not None:
                query = query.limit(limit)
            return list((await conn.execute(query)).scalars())

    async def catalog(self, limit: int | None, last: str | None) -> list[str]:
        query = select(s.repositories.c.name)
        if last:
            query = query.where(s.repositories.c.name > last)
        query = query.order_by(s.repositories.c.name)
        if limit is not None:
            query = query.limit(limit)
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    async def referrers(self, name: str, subject: Digest) -> list[Referrer]:
        m = s.manifests
        query = (
            select(m.c.digest, m.c.media_type, m.c.size, m.c.artifact_type, m.c.annotations)
            .join(s.repositories, s.repositories.c.id == m.c.repository_id)
            .where(s.repositories.c.name == name, m.c.subject == str(subject))
            .order_by(m.c.created_at, m.c.digest)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Referrer(
                r.digest,
                r.media_type,
                r.size,
                r.artifact_type,
                json.loads(r.annotations) if r.annotations else None,
            )
            for r in rows
        ]

    async def blob_count(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(func.count()).select_from(s.blobs))).scalar_one()

    async def is_referenced(self, conn: AsyncConnection, digest: str) -> bool:
        query = select(
            exists().where(s.manifest_references.c.target == digest)
            | exists().where(s.manifests.c.digest == digest)
        )
        return bool((await conn.execute(query)).scalar())
