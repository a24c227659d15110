"""The job source of a worker on another machine: the hub's worker API over HTTP."""

from __future__ import annotations

import asyncio

import httpx

from dockyard.builds.jobs import Job


class RemoteJobs:
    def __init__(self, hub_url: str, token: str, name: str, timeout: float = 30.0) -> None:
        self.name = name
        self._http = httpx.AsyncClient(
            base_url=hub_url.rstrip("/"),
            headers={"authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    async def _post(self, path: str, body: dict[str, object]) -> httpx.Response:
        response = await self._http.post(path, json=body)
        if response.status_code == 401:
            raise PermissionError("the hub refused this worker's token")
        response.raise_for_status()
        return response

    async def lease(self) -> Job | None:
        response = await self._post("/api/v1/worker/lease", {"worker": self.name})
        return None if response.status_code == 204 else Job.from_json(response.json())

    async def heartbeat(self, job: Job, status: str) -> bool:
        body = {"lease_token": job.lease_token, "status": status}
        response = await self._post(f"/api/v1/worker/builds/{job.build_id}/heartbeat", body)
        return bool(response.json()["alive"])

    async def log(self, job: Job, text: str) -> bool:
        body = {"lease_token": job.lease_token, "text": text}
        response = await self._post(f"/api/v1/worker/builds/{job.build_id}/log", body)
        return bool(response.json()["alive"])

    async def finish(self, job: Job, status: str, error: str | None, step: str | None) -> bool:
        body = {"lease_token": job.lease_token, "status": status, "error": error, "step": step}
        response = await self._post(f"/api/v1/worker/builds/{job.build_id}/finish", body)
        return bool(response.json()["accepted"])

    async def work_changed(self) -> None:
        """The hub does not call workers back: only the worker's polling finds new builds."""
        await asyncio.Future()

    async def close(self) -> None:
        await self._http.aclose()
