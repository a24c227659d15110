"""The build queue: leasing, fencing, expiry, cancellation, concurrency limits."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update

from dockyard.builds.queue import (
    BUILDING,
    CANCELLED,
    CLONING,
    ERROR,
    MAX_ATTEMPTS,
    QUEUED,
    SUCCESS,
    BuildQueue,
)
from dockyard.db import schema as s
from dockyard.db.engine import migrate, open_engine, sqlite_url


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[BuildQueue]:
    url = sqlite_url(tmp_path / "db.sqlite")
    migrate(url)
    engine = open_engine(url)
    async with engine.begin() as conn:
        for repository_id, name in ((1, "alice/web"), (2, "bobby/api")):
            await conn.execute(
                s.repositories.insert().values(id=repository_id, name=name, created_at=0)
            )
    yield BuildQueue(engine, namespace_limit=1)
    await engine.dispose()


async def _enqueue(
    queue: BuildQueue,
    repository_id: int = 1,
    ref: str = "main",
    commit: str | None = None,
    tag: str = "latest",
) -> int:
    return await queue.enqueue(
        repository_id=repository_id,
        namespace="alice" if repository_id == 1 else "bobby",
        source_type="branch",
        source_ref=ref,
        docker_tags=[tag],
        dockerfile="Dockerfile",
        context="/",
        cache=True,
        trigger="test",
        commit=commit or f"{ref}-commit",
    )


async def test_lease_heartbeat_finish(queue: BuildQueue) -> None:
    build_id = await _enqueue(queue)
    assert await _enqueue(queue) == build_id  # the same push twice queues one build
    lease = await queue.lease("w1", 30)
    assert lease is not None and lease.build.id == build_id
    assert lease.build.status == CLONING
    assert await queue.lease("w2", 30) is None
    assert await queue.heartbeat(build_id, lease.token, 30, BUILDING)
    assert await queue.append_log(build_id, "Step 1/1\n", lease.token)
    assert not await queue.append_log(build_id, "forged\n", "not-the-token")
    assert await queue.finish(build_id, lease.token, SUCCESS)
    assert not await queue.finish(build_id, lease.token, SUCCESS)
    build = await queue.get(build_id)
    assert build is not None and build.status == SUCCESS
    assert [text for _, text in await queue.logs(build_id)] == ["Step 1/1\n"]


async def test_expired_lease_is_fenced_and_rerun(queue: BuildQueue) -> None:
    build_id = await _enqueue(queue)
    first = await queue.lease("dies", 0.01)
    assert first is not None
    time.sleep(0.05)
    second = await queue.lease("takes-over", 30)
    assert second is not None and second.build.id == build_id
    assert second.build.attempt == 2
    # The first worker comes back: everything it says is refused.
    assert not await queue.heartbeat(build_id, first.token, 30)
    assert not await queue.finish(build_id, first.token, SUCCESS)
    assert await queue.finish(build_id, second.token, SUCCESS)


async def test_a_build_whose_workers_keep_dying_ends_in_error(queue: BuildQueue) -> None:
    build_id = await _enqueue(queue)
    for _ in range(MAX_ATTEMPTS):
        assert await queue.lease("dies", 0.01) is not None
        time.sleep(0.03)
    assert await queue.lease("next", 30) is None
    build = await queue.get(build_id)
    assert build is not None and build.status == ERROR


async def test_cancel_ends_the_lease(queue: BuildQueue) -> None:
    build_id = await _enqueue(queue)
    lease = await queue.lease("w", 30)
    assert lease is not None
    assert await queue.cancel(build_id)
    assert not await queue.heartbeat(build_id, lease.token, 30)
    assert not await queue.finish(build_id, lease.token, SUCCESS)
    build = await queue.get(build_id)
    assert build is not None and build.status == CANCELLED
    retried = await queue.retry(build_id)
    assert retried is not None and retried != build_id
    again = await queue.get(retried)
    assert again is not None and again.status == QUEUED and again.trigger == "retry"


async def test_namespace_concurrency_limit(queue: BuildQueue) -> None:
    await _enqueue(queue, 1, "a")
    await _enqueue(queue, 1, "b")
    other = await _enqueue(queue, 2, "c")
    first = await queue.lease("w1", 30)
    assert first is not None and first.build.namespace == "alice"
    # alice is at her limit of one running build: bobby's goes first.
    second = await queue.lease("w2", 30)
    assert second is not None and second.build.id == other
    assert await queue.lease("w3", 30) is None
    await queue.finish(first.build.id, first.token, SUCCESS)
    third = await queue.lease("w3", 30)
    assert third is not None and third.build.source_ref == "b"


async def test_only_outcomes_a_worker_may_report(queue: BuildQueue) -> None:
    build_id = await _enqueue(queue)
    lease = await queue.lease("w", 30)
    assert lease is not None
    with pytest.raises(ValueError):
        await queue.finish(build_id, lease.token, CANCELLED)
    async with queue.engine.begin() as conn:
        await conn.execute(update(s.builds).values(status=QUEUED))


async def test_builds_of_the_same_tags_run_in_push_order(queue: BuildQueue) -> None:
    roomy = BuildQueue(queue.engine, namespace_limit=5)
    older = await _enqueue(roomy, 1, "main")
    newer = await _enqueue(roomy, 1, "main", commit="a-newer-commit")
    other_tag = await _enqueue(roomy, 1, "feature")
    await _enqueue(roomy, 1, "v1", tag="1")
    first = await roomy.lease("w1", 30)
    assert first is not None and first.build.id == older
    # The newer push of `latest` waits: were it to finish first, `latest` would go back in time.
    second = await roomy.lease("w2", 30)
    assert second is not None and second.build.id not in (newer, other_tag)
    assert second.build.docker_tags == ("1",)
    assert await roomy.lease("w3", 30) is None
    await roomy.finish(first.build.id, first.token, SUCCESS)
    third = await roomy.lease("w3", 30)
    assert third is not None and third.build.id == newer
