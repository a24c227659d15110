"""Garbage collection: blobs no manifest references, untagged manifests, stale uploads.

Safe beside live pushes: a blob used within the grace period is never collected, and the
deletions happen under the store's sweep guard, which excludes content becoming visible.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import and_, delete, exists, select

from dockyard.db import schema as s
from dockyard.db.engine import begin
from dockyard.oci.digest import Digest
from dockyard.registry.context import Registry


@dataclass
class Report:
    blob_count: int = 0
    blob_bytes: int = 0
    manifest_count: int = 0
    upload_count: int = 0
    lines: list[str] = field(default_factory=list)


def _referenced(digest: str):
    return exists().where(s.manifest_references.c.target == digest) | exists().where(
        s.manifests.c.digest == digest
    )


async def _untagged_roots(registry: Registry) -> list[tuple[int, str]]:
    """Manifests that no tag, no index in their repository, and no present subject keeps."""
    m, t, r = s.manifests, s.tags, s.manifest_references
    subject = s.manifests.alias("subject_manifest")
    query = select(m.c.repository_id, m.c.digest).where(
        ~exists().where(and_(t.c.repository_id == m.c.repository_id, t.c.digest == m.c.digest)),
        ~exists().where(
            and_(
                r.c.repository_id == m.c.repository_id,
                r.c.target == m.c.digest,
                r.c.is_manifest == 1,
            )
        ),
        (m.c.subject.is_(None))
        | ~exists().where(
            and_(subject.c.repository_id == m.c.repository_id, subject.c.digest == m.c.subject)
        ),
    )
    async with registry.meta.engine.connect() as conn:
        return [(row.repository_id, row.digest) for row in await conn.execute(query)]


async def _delete_untagged(registry: Registry, report: Report, dry_run: bool) -> None:
    seen: set[tuple[int, str]] = set()
    while True:
        roots = [root for root in await _untagged_roots(registry) if root not in seen]
        if not roots:
            return
        seen.update(roots)
        report.manifest_count += len(roots)
        report.lines.extend(f"manifest {digest}" for _, digest in roots)
        if dry_run:
            return
        async with begin(registry.meta.engine) as conn:
            for repository_id, digest in roots:
                where = {"repository_id": repository_id}
                await conn.execute(delete(s.manifests).filter_by(**where, digest=digest))
                await conn.execute(
                    delete(s.manifest_references).filter_by(**where, manifest=digest)
                )
        registry.meta.changes.bump()


async def collect(
    registry: Registry,
    *,
    dry_run: bool = True,
    delete_untagged: bool = False,
    grace: float = 3600.0,
    upload_ttl: float = 7 * 24 * 3600.0,
) -> Report:
    report = Report()
    if delete_untagged:
        await _delete_untagged(registry, report, dry_run)
    now = time.time()
    cutoff = now - grace
    candidates: list[tuple[Digest, float]] = [
        (digest, mtime) async for digest, mtime in registry.store.digests() if mtime < cutoff
    ]
    async with registry.store.sweep_guard():
        for digest, _ in candidates:
            key = str(digest)
            async with begin(registry.meta.engine) as conn:
                if (await conn.execute(select(_referenced(key)))).scalar():
                    continue
                row = (
                    await conn.execute(select(s.blobs.c.last_used).where(s.blobs.c.digest == key))
                ).first()
                if row is not None and row.last_used >= cutoff:
                    continue
                size = await registry.store.stat(digest) or 0
                report.blob_count += 1
                report.blob_bytes += size
                report.lines.append(f"blob {key} ({size} bytes)")
                if dry_run:
                    continue
                await conn.execute(
                    delete(s.repository_blobs).where(s.repository_blobs.c.digest == key)
                )
                await conn.execute(delete(s.blobs).where(s.blobs.c.digest == key))
            await registry.store.delete(digest)
    async with registry.meta.engine.connect() as conn:
        live = set((await conn.execute(select(s.uploads.c.id))).scalars())
    async for upload_id, mtime in registry.store.uploads():
        if mtime < now - upload_ttl or (upload_id not in live and mtime < cutoff):
            report.upload_count += 1
            report.lines.append(f"upload {upload_id}")
            if not dry_run:
                await registry.store.abort_upload(upload_id.removesuffix(".tmp"))
                await registry.meta.delete_upload(upload_id)
    return report
