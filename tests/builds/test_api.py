"""Automated builds over HTTP: linking, webhooks, triggers, the worker API, cancel and retry."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.builds.conftest import OWNER, PASSWORD, WORKER_TOKEN, make_repository
from tests.conftest import free_port
from tests.hub.conftest import HubClient, basic, bearer


def github_push(secret: str, ref: str, after: str = "a" * 40) -> tuple[dict[str, str], bytes]:
    body = json.dumps(
        {
            "ref": ref,
            "after": after,
            "deleted": False,
            "head_commit": {"id": after, "message": "Change things"},
        }
    ).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "x-github-event": "push",
        "x-hub-signature-256": signature,
        "content-type": "application/json",
    }, body


async def _link(hub: HubClient, url: str, **extra: object) -> dict[str, object]:
    response = await hub.http.post(
        "/api/v1/repositories/alice/app/source", json={"url": url, **extra}, headers=OWNER
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_link_uses_the_default_branch_and_marks_the_repository(
    builds_hub: HubClient, tmp_path: Path
) -> None:
    bare = make_repository(tmp_path, {"Dockerfile": "FROM scratch\n"}, branch="trunk")
    linked = await _link(builds_hub, str(bare))
    assert linked["rules"] == [
        {
            "id": linked["rules"][0]["id"],
            "source_type": "branch",
            "source_name": "trunk",
            "docker_tag": "latest",
            "dockerfile": "Dockerfile",
            "context": "/",
            "autobuild": True,
            "cache": True,
        }
    ]
    assert str(linked["webhook_url"]).startswith("http://hub.test/hooks/")
    assert len(str(linked["webhook_secret"])) >= 32
    shown = await builds_hub.http.get("/api/v1/repositories/alice/app/source", headers=OWNER)
    assert linked["webhook_secret"] not in shown.text
    assert "trigger" not in shown.text
    found = (await builds_hub.http.get("/v1/search?q=app")).json()["results"]
    assert found[0]["is_automated"] is True


async def test_only_admins_link_and_local_paths_can_be_refused(
    builds_hub: HubClient, tmp_path: Path
) -> None:
    await builds_hub.sign_up("mallory", PASSWORD)
    stranger = await builds_hub.http.post(
        "/api/v1/repositories/alice/app/source",
        json={"url": "/tmp"},
        headers=basic("mallory", PASSWORD),
    )
    assert stranger.status_code == 403
    from dockyard.builds.sources import SourceError, check_url

    with pytest.raises(SourceError, match="local paths"):
        check_url(str(tmp_path), allow_local=False)
    for bad in ("--upload-pack=touch /tmp/x", "ext::sh -c touch% /tmp/pwned", "http://a b"):
        with pytest.raises(SourceError):
            check_url(bad, allow_local=True)


async def test_webhook_builds_matching_refs_only_when_signed(
    builds_hub: HubClient, tmp_path: Path
) -> None:
    bare = make_repository(tmp_path, {"Dockerfile": "FROM scratch\n"}, branch="main")
    linked = await _link(
        builds_hub,
        str(bare),
        rules=[
            {"source_type": "branch", "source_name": "main", "docker_tag": "latest"},
            {"source_type": "tag", "source_name": "/^v([0-9.]+)$/", "docker_tag": "{\\1}"},
        ],
    )
    hook = str(linked["webhook_url"]).removeprefix("http://hub.test")
    secret = str(linked["webhook_secret"])
    headers, body = github_push("not the secret", "refs/heads/main")
    forged = await builds_hub.http.post(hook, content=body, headers=headers)
    assert forged.status_code == 403
    builds = await builds_hub.http.get("/api/v1/repositories/alice/app/builds", headers=OWNER)
    assert builds.json() == []
    headers, body = github_push(secret, "refs/tags/v1.4.2", "b" * 40)
    accepted = await builds_hub.http.post(hook, content=body, headers=headers)
    assert accepted.status_code == 202
    headers, body = github_push(secret, "refs/heads/other")
    assert (await builds_hub.http.post(hook, content=body, headers=headers)).json() == {
        "builds": []
    }
    listed = (
        await builds_hub.http.get("/api/v1/repositories/alice/app/builds", headers=OWNER)
    ).json()
    assert [(b["docker_tags"], b["commit"], b["status"]) for b in listed] == [
        (["1.4.2"], "b" * 40, "queued")
    ]
    assert listed[0]["commit_message"] == "Change things"


async def test_trigger_url_and_rate_limit(builds_hub: HubClient, tmp_path: Path) -> None:
    bare = make_repository(tmp_path, {"Dockerfile": "FROM scratch\n"}, branch="main")
    linked = await _link(builds_hub, str(bare))
    trigger = str(linked["trigger_url"]).removeprefix("http://hub.test")
    assert (await builds_hub.http.post("/api/v1/trigger/wrong", json={})).status_code == 404
    first = await builds_hub.http.post(
        trigger, json={"source_type": "Branch", "source_name": "main"}
    )
    assert first.status_code == 202 and len(first.json()["builds"]) == 1
    by_tag = await builds_hub.http.post(trigger, json={"docker_tag": "latest"})
    assert by_tag.json()["builds"] == first.json()["builds"]  # still queued: not duplicated
    statuses = [(await builds_hub.http.post(trigger, json={})).status_code for _ in range(12)]
    assert 429 in statuses


async def test_worker_api_lease_to_finish(builds_hub: HubClient, tmp_path: Path) -> None:
    bare = make_repository(tmp_path, {"Dockerfile": "FROM scratch\n"}, branch="main")
    await _link(builds_hub, str(bare))
    started = await builds_hub.http.post(
        "/api/v1/repositories/alice/app/builds", json={}, headers=OWNER
    )
    build_id = started.json()["builds"][0]
    assert (await builds_hub.http.post("/api/v1/worker/lease", json={})).status_code == 401
    wrong = await builds_hub.http.post("/api/v1/worker/lease", json={}, headers=bearer("guess"))
    assert wrong.status_code == 401
    worker = bearer(WORKER_TOKEN)
    leased = await builds_hub.http.post(
        "/api/v1/worker/lease", json={"worker": "w1"}, headers=worker
    )
    job = leased.json()
    assert job["build_id"] == build_id and job["url"] == str(bare)
    assert job["registry"] == "http://hub.test"  # where the worker reached the hub, not loopback
    claims = json.loads(
        __import__("base64").urlsafe_b64decode(job["registry_token"].split(".")[1] + "==")
    )
    assert claims["access"] == [
        {"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}
    ]
    assert (
        await builds_hub.http.post("/api/v1/worker/lease", json={}, headers=worker)
    ).status_code == 204
    base = f"/api/v1/worker/builds/{build_id}"
    token = job["lease_token"]
    beat = await builds_hub.http.post(
        f"{base}/heartbeat", headers=worker, json={"lease_token": token, "status": "building"}
    )
    assert beat.json() == {"alive": True}
    await builds_hub.http.post(
        f"{base}/log",
        headers=worker,
        json={"lease_token": token, "text": "Step 1/1 : FROM scratch\n"},
    )
    done = await builds_hub.http.post(
        f"{base}/finish", headers=worker, json={"lease_token": token, "status": "success"}
    )
    assert done.json() == {"accepted": True}
    detail = (await builds_hub.http.get(f"/api/v1/builds/{build_id}", headers=OWNER)).json()
    assert (detail["status"], detail["worker"]) == ("success", "w1")
    logs = await builds_hub.http.get(f"/api/v1/builds/{build_id}/logs?follow=1", headers=OWNER)
    assert "Step 1/1 : FROM scratch" in logs.text


async def test_cancel_retry_and_privacy(builds_hub: HubClient, tmp_path: Path) -> None:
    bare = make_repository(tmp_path, {"Dockerfile": "FROM scratch\n"}, branch="main")
    await _link(builds_hub, str(bare))
    await builds_hub.http.patch(
        "/api/v1/repositories/alice/app", json={"is_private": True}, headers=OWNER
    )
    build_id = (
        await builds_hub.http.post("/api/v1/repositories/alice/app/builds", json={}, headers=OWNER)
    ).json()["builds"][0]
    await builds_hub.sign_up("bobby", PASSWORD)
    for auth in ({}, basic("bobby", PASSWORD)):
        assert (
            await builds_hub.http.get(f"/api/v1/builds/{build_id}", headers=auth)
        ).status_code == 404
        assert (
            await builds_hub.http.post(f"/api/v1/builds/{build_id}/cancel", headers=auth)
        ).status_code == 404
    assert (
        await builds_hub.http.post(f"/api/v1/builds/{build_id}/retry", headers=OWNER)
    ).status_code == 409
    assert (
        await builds_hub.http.post(f"/api/v1/builds/{build_id}/cancel", headers=OWNER)
    ).status_code == 204
    retried = await builds_hub.http.post(f"/api/v1/builds/{build_id}/retry", headers=OWNER)
    assert retried.status_code == 202
    listed = (
        await builds_hub.http.get("/api/v1/repositories/alice/app/builds", headers=OWNER)
    ).json()
    assert [b["status"] for b in listed] == ["queued", "cancelled"]


class _Receiver(BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict[str, object]]] = []
    failures_left = 1

    def do_POST(self) -> None:
        length = int(self.headers["content-length"])
        body = json.loads(self.rfile.read(length))
        if _Receiver.failures_left > 0:
            _Receiver.failures_left -= 1
            self.send_response(500)
        else:
            _Receiver.bodies.append(body)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.bodies = []
    _Receiver.failures_left = 1
    server = HTTPServer(("127.0.0.1", free_port()), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


async def test_outgoing_webhooks_on_push_with_retry(builds_hub: HubClient, receiver: str) -> None:
    added = await builds_hub.http.post(
        "/api/v1/repositories/alice/app/webhooks",
        json={"name": "ci", "url": receiver},
        headers=OWNER,
    )
    assert added.status_code == 201
    bad = await builds_hub.http.post(
        "/api/v1/repositories/alice/app/webhooks",
        json={"name": "x", "url": "file:///etc"},
        headers=OWNER,
    )
    assert bad.status_code == 400
    assert (await builds_hub.push_image("alice/app", "v1", OWNER)).status_code == 201
    notifier = builds_hub.app.builds.notifier  # type: ignore[union-attr]
    from sqlalchemy import select

    from dockyard.db import schema as s

    deadline = time.monotonic() + 15
    while not _Receiver.bodies and time.monotonic() < deadline:  # the hub's sender loop
        await asyncio.sleep(0.1)
    assert _Receiver.bodies[0]["event"] == "push"
    assert _Receiver.bodies[0]["push_data"]["tags"] == ["v1"]  # type: ignore[index]
    assert _Receiver.bodies[0]["repository"]["repo_name"] == "alice/app"  # type: ignore[index]
    async with notifier.engine.connect() as conn:
        rows = (await conn.execute(select(s.webhook_deliveries))).all()
    assert [(row.status, row.attempts) for row in rows] == [("delivered", 2)]
    assert len(_Receiver.bodies) == 1
    assert await notifier.deliver_due() == 0
