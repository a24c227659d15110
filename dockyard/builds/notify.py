"""Outgoing webhooks: on push and on build completion, a JSON POST with retries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import httpx
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from dockyard.db import schema as s
from dockyard.db.engine import begin

log = logging.getLogger("dockyard.builds")

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
MAX_ATTEMPTS = 5
BACKOFF = (1.0, 5.0, 30.0, 120.0, 600.0)


class Notifier:
    def __init__(self, engine: AsyncEngine, timeout: float = 10.0) -> None:
        self.engine = engine
        self.timeout = timeout
        self._wake = asyncio.Event()

    async def add_webhook(self, repository_id: int, name: str, url: str) -> int:
        if not url.startswith(("http://", "https://")) or len(url) > 2048:
            raise ValueError("a webhook URL must be http:// or https://")
        if not name.strip() or len(name) > 100:
            raise ValueError("a webhook needs a name of 1 to 100 characters")
        async with begin(self.engine) as conn:
            result = await conn.execute(
                s.repository_webhooks.insert().values(
                    repository_id=repository_id,
                    name=name.strip(),
                    url=url,
                    created_at=time.time(),
                )
            )
        return result.inserted_primary_key[0]

    async def webhooks(self, repository_id: int) -> list[dict[str, Any]]:
        w = s.repository_webhooks
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(w.c.id, w.c.name, w.c.url).where(w.c.repository_id == repository_id)
            )
            return [dict(row._mapping) for row in rows]

    async def remove_webhook(self, repository_id: int, webhook_id: int) -> bool:
        w = s.repository_webhooks
        async with begin(self.engine) as conn:
            result = await conn.execute(
                delete(w).where(w.c.id == webhook_id, w.c.repository_id == repository_id)
            )
        return result.rowcount > 0

    async def emit(self, repository_id: int, event: str, payload: dict[str, Any]) -> None:
        """Queue one delivery per webhook of the repository; the sender loop posts them."""
        hooks = await self.webhooks(repository_id)
        if not hooks:
            return
        body = json.dumps({"event": event, **payload})
        async with begin(self.engine) as conn:
            for hook in hooks:
                await conn.execute(
                    s.webhook_deliveries.insert().values(
                        webhook_id=hook["id"],
                        event=event,
                        payload=body,
                        next_attempt=time.time(),
                        status=PENDING,
                    )
                )
        self._wake.set()

    async def deliver_due(self) -> int:
        """Post every delivery that is due and not taken by another sender; returns how many."""
        d, w = s.webhook_deliveries, s.repository_webhooks
        async with self.engine.connect() as conn:
            due = (
                await conn.execute(
                    select(d.c.id, d.c.payload, d.c.attempts, w.c.url)
                    .join(w, w.c.id == d.c.webhook_id)
                    .where(d.c.status == PENDING, d.c.next_attempt <= time.time())
                    .order_by(d.c.id)
                    .limit(50)
                )
            ).all()
        attempted = 0
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
            for row in due:
                if not await self._claim(row.id, row.attempts):
                    continue
                attempted += 1
                error = None
                try:
                    response = await client.post(
                        row.url,
                        content=row.payload,
                        headers={
                            "content-type": "application/json",
                            "user-agent": "Dockyard-Hookshot",
                        },
                    )
                    if response.status_code >= 300:
                        error = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    error = str(exc) or type(exc).__name__
                attempts = row.attempts + 1
                values: dict[str, Any] = {"attempts": attempts, "last_error": error}
                if error is None:
                    values["status"] = DELIVERED
                elif attempts >= MAX_ATTEMPTS:
                    values["status"] = FAILED
                    log.warning("webhook gave up url=%s error=%s", row.url, error)
                else:
                    values["next_attempt"] = time.time() + BACKOFF[attempts - 1]
                async with begin(self.engine) as conn:
                    await conn.execute(update(d).where(d.c.id == row.id).values(**values))
        return attempted

    async def _claim(self, delivery_id: int, attempts: int) -> bool:
        """Take a due delivery for one sender (of many loops or nodes) until it is reported."""
        d = s.webhook_deliveries
        async with begin(self.engine) as conn:
            result = await conn.execute(
                update(d)
                .where(d.c.id == delivery_id, d.c.status == PENDING, d.c.attempts == attempts)
                .where(d.c.next_attempt <= time.time())
                .values(next_attempt=time.time() + self.timeout * 3)
            )
        return result.rowcount == 1

    async def run(self, interval: float = 1.0) -> None:
        while True:
            try:
                await self.deliver_due()
            except Exception:
                log.exception("delivering webhooks failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
