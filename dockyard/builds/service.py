"""Automated builds for the hub: linking, triggers, the in-process job source, notifications."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any

from dockyard.builds.jobs import Job
from dockyard.builds.notify import Notifier
from dockyard.builds.queue import BuildQueue, Lease
from dockyard.builds.rules import BRANCH, TAG, Rule, default_rule
from dockyard.builds.sources import Linked, Source, Sources
from dockyard.builds.webhooks import PushEvent, WebhookRejected, parse_delivery, provider_of
from dockyard.hub.context import Hub
from dockyard.hub.repositories import RepositoryInfo

JOB_TOKEN_SECONDS = 3 * 3600
TRIGGERS_PER_MINUTE = 10


class TriggerLimiter:
    """At most a few manual or URL triggers a minute per repository."""

    def __init__(self) -> None:
        self._recent: dict[int, list[float]] = {}

    def allow(self, repository_id: int) -> bool:
        now = time.monotonic()
        recent = [t for t in self._recent.get(repository_id, []) if t > now - 60]
        allowed = len(recent) < TRIGGERS_PER_MINUTE
        self._recent[repository_id] = [*recent, now] if allowed else recent
        return allowed


@dataclass
class Builds:
    hub: Hub
    sources: Sources
    queue: BuildQueue
    notifier: Notifier
    registry_url: str
    lease_seconds: float = 30.0
    worker_token: str = ""
    limiter: TriggerLimiter = field(default_factory=TriggerLimiter)

    async def link(
        self,
        info: RepositoryInfo,
        url: str,
        auth_kind: str = "none",
        username: str | None = None,
        secret: str | None = None,
        rules: list[Rule] | None = None,
    ) -> Linked:
        """Link a git source; without rules, the default branch builds as `latest`."""
        linked = await self.sources.link(info.id, url, auth_kind, username, secret)
        if rules is None:
            branch = await default_branch(url) if auth_kind == "none" else None
            rules = [default_rule(branch or "main")]
        await self.sources.set_rules(linked.source.id, rules)
        await self.hub.repositories.set_automated(info.name, True)
        return linked

    async def unlink(self, info: RepositoryInfo) -> bool:
        unlinked = await self.sources.unlink(info.id)
        await self.hub.repositories.set_automated(info.name, False)
        return unlinked

    async def on_webhook(self, source_id: int, headers: dict[str, str], body: bytes) -> list[int]:
        """Authenticate a delivery and queue what its pushes build (WebhookRejected if forged)."""
        source = await self.sources.by_id(source_id)
        secret = await self.sources.webhook_secret(source_id) if source else None
        if source is None or secret is None:
            raise WebhookRejected("unknown webhook")
        events = parse_delivery(headers, body, secret)
        return await self._start(source, events, trigger=provider_of(headers), automatic=True)

    async def build_now(
        self, source: Source, source_type: str | None, ref: str | None, trigger: str
    ) -> list[int]:
        """Queue builds for a ref, or for every literal rule when none is named."""
        if source_type and ref:
            events = [PushEvent(trigger, source_type, ref, None, None)]
        else:
            events = [
                PushEvent(trigger, rule.source_type, rule.source_name, None, None)
                for rule in await self.sources.rules(source.id)
                if rule.pattern is None
            ]
        return await self._start(source, events, trigger=trigger, automatic=False)

    async def on_trigger(self, token: str, body: dict[str, Any]) -> list[int] | None:
        """Docker Hub's trigger URL: `{"source_type": "Branch", "source_name": "main"}` or
        `{"docker_tag": "latest"}` or nothing for every literal rule. None for a bad token."""
        source = await self.sources.by_trigger_token(token)
        if source is None:
            return None
        docker_tag = body.get("docker_tag")
        if isinstance(docker_tag, str):
            ids = []
            for rule in await self.sources.rules(source.id):
                if rule.pattern is None and docker_tag in rule.docker_tag.split(","):
                    ids += await self.build_now(
                        source, rule.source_type, rule.source_name, "trigger"
                    )
            return ids
        source_type = str(body.get("source_type", "")).lower() or None
        name = body.get("source_name")
        if source_type not in (None, BRANCH, TAG) or (
            name is not None and not isinstance(name, str)
        ):
            return []
        return await self.build_now(source, source_type, name, "trigger")

    async def _start(
        self, source: Source, events: list[PushEvent], trigger: str, automatic: bool
    ) -> list[int]:
        info = await self.hub.repositories.get_by_id(source.repository_id)
        if info is None:
            return []
        ids = []
        for event in events:
            for rule in await self.sources.rules(source.id):
                if automatic and not rule.autobuild:
                    continue
                tags = rule.tags_for(event.source_type, event.ref)
                if not tags:
                    continue
                ids.append(
                    await self.queue.enqueue(
                        repository_id=info.id,
                        namespace=info.namespace,
                        rule_id=rule.id,
                        source_type=event.source_type,
                        source_ref=event.ref,
                        commit=event.commit,
                        commit_message=event.message,
                        docker_tags=tags,
                        dockerfile=rule.dockerfile,
                        context=rule.context,
                        cache=rule.cache,
                        trigger=trigger,
                    )
                )
        return ids

    async def job_for(self, lease: Lease, worker: str, registry: str) -> Job | None:
        """Everything a worker needs for a leased build, with a push token for its repository
        and the registry's URL as that worker reaches it."""
        build = lease.build
        info = await self.hub.repositories.get_by_id(build.repository_id)
        source = await self.sources.for_repository(build.repository_id)
        if info is None or source is None:
            await self.queue.finish(build.id, lease.token, "error", "the source was unlinked")
            return None
        access = [{"type": "repository", "name": info.name, "actions": ["pull", "push"]}]
        await self.queue.append_log(build.id, f"Leased by worker {worker}\n")
        return Job(
            build_id=build.id,
            lease_token=lease.token,
            lease_seconds=self.lease_seconds,
            repository=info.name,
            url=source.url,
            auth_kind=source.auth_kind,
            username=source.username,
            credential=await self.sources.credential(source.id),
            source_type=build.source_type,
            source_ref=build.source_ref,
            commit=build.commit,
            commit_message=build.commit_message,
            dockerfile=build.dockerfile,
            context=build.context,
            docker_tags=build.docker_tags,
            cache=build.cache,
            registry=registry,
            registry_token=self.hub.signer.issue(
                f"build-{build.id}", access, seconds=JOB_TOKEN_SECONDS
            ),
        )

    async def lease(self, worker: str, registry: str | None = None) -> Job | None:
        """A job for `worker`, which reaches the registry at `registry` (a remote worker: the
        hub's URL as it called it) or, in this process, at the server's own address."""
        lease = await self.queue.lease(worker, self.lease_seconds)
        if lease is None:
            return None
        return await self.job_for(lease, worker, registry or self.registry_url)

    async def finished(self, build_id: int) -> None:
        build = await self.queue.get(build_id)
        info = await self.hub.repositories.get_by_id(build.repository_id) if build else None
        if build is None or info is None:
            return
        await self.notifier.emit(
            info.id,
            "build",
            {
                "repository": repository_payload(info),
                "build": {
                    "id": build.id,
                    "status": build.status,
                    "tags": list(build.docker_tags),
                    "source_type": build.source_type,
                    "source_ref": build.source_ref,
                    "commit": build.commit,
                    "error": build.error,
                },
            },
        )

    async def pushed(self, name: str, tags: list[str], digest: str) -> None:
        info = await self.hub.repositories.get(name)
        if info is None:
            return
        await self.notifier.emit(
            info.id,
            "push",
            {
                "repository": repository_payload(info),
                "push_data": {"pushed_at": int(time.time()), "tags": tags, "digest": digest},
            },
        )


class LocalJobs:
    """The in-process worker's job source: the queue itself."""

    def __init__(self, builds: Builds, name: str) -> None:
        self.builds = builds
        self.name = name

    async def lease(self) -> Job | None:
        return await self.builds.lease(self.name)

    async def heartbeat(self, job: Job, status: str) -> bool:
        return await self.builds.queue.heartbeat(
            job.build_id, job.lease_token, job.lease_seconds, status
        )

    async def log(self, job: Job, text: str) -> bool:
        return await self.builds.queue.append_log(job.build_id, text, job.lease_token)

    async def finish(self, job: Job, status: str, error: str | None, step: str | None) -> bool:
        done = await self.builds.queue.finish(job.build_id, job.lease_token, status, error, step)
        if done:
            await self.builds.finished(job.build_id)
        return done

    async def work_changed(self) -> None:
        changed = self.builds.queue.changed
        await changed.wait()
        changed.clear()


def repository_payload(info: RepositoryInfo) -> dict[str, Any]:
    return {
        "repo_name": info.display_name,
        "name": info.name.split("/", 1)[-1],
        "namespace": info.namespace,
        "is_private": info.is_private,
        "description": info.description,
        "star_count": info.star_count,
    }


async def default_branch(url: str) -> str | None:
    """The branch HEAD points to on the remote, as `git ls-remote --symref` tells."""
    process = await asyncio.create_subprocess_exec(
        "git",
        "ls-remote",
        "--symref",
        "--",
        url,
        "HEAD",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        stdin=asyncio.subprocess.DEVNULL,
        env={
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ALLOW_PROTOCOL": "https:http:ssh:git:file",
        },
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 20)
    except TimeoutError:
        process.kill()
        return None
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
            return line[len("ref: refs/heads/") : -len("\tHEAD")]
    return None
