"""What a worker receives with a lease, and the interface to whoever hands leases out."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Job:
    build_id: int
    lease_token: str
    lease_seconds: float
    repository: str
    url: str
    auth_kind: str
    username: str | None
    credential: str | None
    source_type: str
    source_ref: str
    commit: str | None
    commit_message: str | None
    dockerfile: str
    context: str
    docker_tags: tuple[str, ...]
    cache: bool
    registry: str
    registry_token: str

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value["docker_tags"] = list(self.docker_tags)
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Job:
        value = dict(value)
        value["docker_tags"] = tuple(value["docker_tags"])
        return cls(**value)

    @property
    def registry_host(self) -> str:
        """HOST[:PORT] of the registry the image is pushed to."""
        return self.registry.split("://", 1)[-1].rstrip("/")

    def __repr__(self) -> str:
        return f"Job(build={self.build_id}, repository={self.repository}, ref={self.source_ref})"


class JobSource(Protocol):
    """Leases and reports, in process (the queue) or over the hub's worker API."""

    async def lease(self) -> Job | None: ...

    async def heartbeat(self, job: Job, status: str) -> bool:
        """False when the lease is gone: the build was cancelled or given to another worker."""

    async def log(self, job: Job, text: str) -> bool: ...

    async def finish(self, job: Job, status: str, error: str | None, step: str | None) -> bool: ...

    async def work_changed(self) -> None:
        """Return when a build may have become leasable (the worker also polls)."""
