"""The hub's JSON API: accounts, organisations and teams, collaborators, repositories."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from tests.conftest import free_port
from tests.hub.conftest import HubClient, basic, bearer, hub_settings, open_client

PASSWORD = "correct horse"


async def test_sign_up_rules(hub: HubClient) -> None:
    cases = [
        ({"username": "ab", "email": "a@example.com", "password": PASSWORD}, "username"),
        ({"username": "Alice", "email": "a@example.com", "password": PASSWORD}, "username"),
        ({"username": "library", "email": "a@example.com", "password": PASSWORD}, "reserved"),
        ({"username": "alice", "email": "not-an-email", "password": PASSWORD}, "email"),
        ({"username": "alice", "email": "a@example.com", "password": "short"}, "password"),
        ({"username": "alice", "email": "a@example.com"}, "password"),
    ]
    for body, word in cases:
        response = await hub.http.post("/api/v1/users", json=body)
        assert response.status_code == 400, body
        assert word in response.json()["error"], body
    await hub.sign_up("alice")
    again = await hub.http.post(
        "/api/v1/users", json={"username": "alice", "email": "b@example.com", "password": PASSWORD}
    )
    assert again.status_code == 400
    assert "taken" in again.json()["error"]
    assert (await hub.http.post("/api/v1/users", content=b"[1]")).status_code == 400


async def test_change_password_and_delete_account(hub: HubClient) -> None:
    await hub.sign_up("alice")
    await hub.push_image("alice/web", "v1", basic("alice", PASSWORD))
    wrong = await hub.http.put(
        "/api/v1/user/password",
        json={"old_password": "nope nope", "new_password": "a new password"},
        headers=basic("alice", PASSWORD),
    )
    assert wrong.status_code == 400
    changed = await hub.http.put(
        "/api/v1/user/password",
        json={"old_password": PASSWORD, "new_password": "a new password"},
        headers=basic("alice", PASSWORD),
    )
    assert changed.status_code == 204
    assert (await hub.http.get("/api/v1/user", headers=basic("alice", PASSWORD))).status_code == 401
    new = basic("alice", "a new password")
    assert (await hub.http.get("/api/v1/user", headers=new)).json()["username"] == "alice"
    refused = await hub.http.request("DELETE", "/api/v1/user", json={"password": "x"}, headers=new)
    assert refused.status_code == 403
    deleted = await hub.http.request(
        "DELETE", "/api/v1/user", json={"password": "a new password"}, headers=new
    )
    assert deleted.status_code == 204
    assert (await hub.http.get("/api/v1/user", headers=new)).status_code == 401
    token, _ = await hub.token("repository:alice/web:pull")
    assert (await hub.http.get("/v2/alice/web/tags/list", headers=bearer(token))).status_code in (
        401,
        404,
    )
    # The name is free again, and nothing of the old account comes back with it.
    await hub.sign_up("alice")
    assert (await hub.http.get("/api/v1/repositories/alice/web")).status_code == 404


async def test_repository_page_data_tags_stars_pulls(hub: HubClient) -> None:
    await hub.sign_up("alice")
    await hub.sign_up("bobby")
    owner = basic("alice", PASSWORD)
    await hub.push_image("alice/web", "v1", owner, layer=b"one")
    await hub.push_image("alice/web", "v2", owner, layer=b"second layer")
    tags = (await hub.http.get("/api/v1/repositories/alice/web/tags")).json()
    assert [t["name"] for t in tags] == ["v2", "v1"]
    assert tags[0]["platforms"] == ["linux/amd64"]
    assert tags[0]["size"] == len(b"second layer") + len(b'{"architecture":"amd64","os":"linux"}')
    token, _ = await hub.token("repository:alice/web:pull")
    for _ in range(3):
        await hub.http.get("/v2/alice/web/manifests/v1", headers=bearer(token))
    await hub.hub.pulls.flush()
    assert (await hub.http.put("/api/v1/repositories/alice/web/star")).status_code == 401
    starred = await hub.http.put(
        "/api/v1/repositories/alice/web/star", headers=basic("bobby", PASSWORD)
    )
    assert starred.status_code == 204
    info = (
        await hub.http.get("/api/v1/repositories/alice/web", headers=basic("bobby", PASSWORD))
    ).json()
    assert (info["pull_count"], info["star_count"], info["starred"]) == (3, 1, True)
    assert info["last_pushed"] is not None
    denied = await hub.http.patch(
        "/api/v1/repositories/alice/web",
        json={"description": "mine now"},
        headers=basic("bobby", PASSWORD),
    )
    assert denied.status_code == 403
    updated = await hub.http.patch(
        "/api/v1/repositories/alice/web",
        json={"description": "A web server", "readme": "# Web\n"},
        headers=owner,
    )
    assert updated.json()["description"] == "A web server"
    too_long = await hub.http.patch(
        "/api/v1/repositories/alice/web", json={"description": "x" * 101}, headers=owner
    )
    assert too_long.status_code == 400
    removed = await hub.http.delete("/api/v1/repositories/alice/web/tags/v1", headers=owner)
    assert removed.status_code == 204
    tags = (await hub.http.get("/api/v1/repositories/alice/web/tags")).json()
    assert [t["name"] for t in tags] == ["v2"]
    assert (
        await hub.http.get("/v2/alice/web/manifests/v1", headers=bearer(token))
    ).status_code == 404
    gone = await hub.http.delete("/api/v1/repositories/alice/web", headers=owner)
    assert gone.status_code == 204
    assert (await hub.http.get("/api/v1/repositories/alice/web")).status_code == 404


async def test_create_repository_on_the_web_side(hub: HubClient) -> None:
    await hub.sign_up("alice")
    owner = basic("alice", PASSWORD)
    created = await hub.http.post(
        "/api/v1/repositories",
        json={"name": "alice/planned", "is_private": True, "description": "soon"},
        headers=owner,
    )
    assert created.status_code == 201, created.text
    assert created.json()["is_private"] is True
    elsewhere = await hub.http.post(
        "/api/v1/repositories", json={"name": "someone/else"}, headers=owner
    )
    assert elsewhere.status_code == 400
    assert (await hub.http.get("/api/v1/repositories/alice/planned")).status_code == 404
    assert (
        await hub.http.get("/api/v1/repositories/alice/planned", headers=owner)
    ).status_code == 200


async def test_collaborators_on_a_personal_repository(hub: HubClient) -> None:
    await hub.sign_up("alice")
    await hub.sign_up("bobby")
    owner, helper = basic("alice", PASSWORD), basic("bobby", PASSWORD)
    await hub.push_image("alice/private", "v1", owner)
    await hub.http.patch(
        "/api/v1/repositories/alice/private", json={"is_private": True}, headers=owner
    )
    assert (await hub.push_image("alice/private", "v2", helper)).status_code == 401
    added = await hub.http.put(
        "/api/v1/repositories/alice/private/collaborators/bobby",
        json={"role": "write"},
        headers=owner,
    )
    assert added.status_code == 204
    assert (await hub.push_image("alice/private", "v2", helper)).status_code == 201
    _, access = await hub.token("repository:alice/private:pull,push,delete", helper)
    assert access[0]["actions"] == ["pull", "push"]
    await hub.http.delete("/api/v1/repositories/alice/private/collaborators/bobby", headers=owner)
    _, access = await hub.token("repository:alice/private:pull", helper)
    assert access[0]["actions"] == []


async def test_organisation_teams_and_roles(hub: HubClient) -> None:
    for name in ("alice", "bobby", "carol"):
        await hub.sign_up(name)
    owner = basic("alice", PASSWORD)
    assert (
        await hub.http.post("/api/v1/orgs", json={"name": "acme"}, headers=owner)
    ).status_code == 201
    assert (await hub.push_image("acme/app", "v1", owner)).status_code == 201
    await hub.http.patch("/api/v1/repositories/acme/app", json={"is_private": True}, headers=owner)
    assert (
        await hub.http.post("/api/v1/orgs/acme/teams", json={"name": "devs"}, headers=owner)
    ).status_code == 201
    await hub.http.put("/api/v1/orgs/acme/teams/devs/members/bobby", headers=owner)
    await hub.http.put("/api/v1/orgs/acme/teams/devs/members/carol", headers=owner)
    role = await hub.http.put(
        "/api/v1/orgs/acme/teams/devs/repositories/acme/app", json={"role": "read"}, headers=owner
    )
    assert role.status_code == 204
    _, access = await hub.token("repository:acme/app:pull,push", basic("bobby", PASSWORD))
    assert access[0]["actions"] == ["pull"]
    await hub.http.put(
        "/api/v1/orgs/acme/teams/devs/repositories/acme/app", json={"role": "write"}, headers=owner
    )
    assert (await hub.push_image("acme/app", "v2", basic("carol", PASSWORD))).status_code == 201
    # Members are not owners: they cannot manage the organisation or create repositories.
    stranger = await hub.http.post(
        "/api/v1/orgs/acme/teams", json={"name": "mine"}, headers=basic("bobby", PASSWORD)
    )
    assert stranger.status_code == 404
    assert (await hub.push_image("acme/new", "v1", basic("bobby", PASSWORD))).status_code == 401
    _, access = await hub.token("repository:acme/app:pull", {})
    assert access[0]["actions"] == []


async def test_access_tokens_cannot_mint_tokens(hub: HubClient) -> None:
    await hub.sign_up("alice")
    created = await hub.http.post(
        "/api/v1/user/tokens",
        json={"name": "ci", "scopes": ["read", "write", "delete"]},
        headers=basic("alice", PASSWORD),
    )
    pat = created.json()["token"]
    again = await hub.http.post(
        "/api/v1/user/tokens", json={"name": "more", "scopes": ["read"]}, headers=bearer(pat)
    )
    assert again.status_code == 403
    bad_scope = await hub.http.post(
        "/api/v1/user/tokens",
        json={"name": "x", "scopes": ["admin"]},
        headers=basic("alice", PASSWORD),
    )
    assert bad_scope.status_code == 400


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, list[EmailMessage]]]:
    """A real SMTP server on loopback that keeps what it receives."""
    messages: list[EmailMessage] = []

    class Collect(Message):
        def handle_message(self, message: EmailMessage) -> None:
            messages.append(message)

    port = free_port()
    controller = Controller(Collect(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port, messages
    controller.stop()


async def test_email_confirmation_with_an_smtp_server(
    tmp_path: Path, smtp_server: tuple[int, list[EmailMessage]]
) -> None:
    port, messages = smtp_server
    settings = hub_settings(
        tmp_path / "data", smtp_host="127.0.0.1", smtp_port=port, public_url="http://hub.test"
    )
    client, http = await open_client(settings)
    try:
        response = await http.post(
            "/api/v1/users",
            json={"username": "alice", "email": "alice@example.com", "password": PASSWORD},
        )
        assert response.json()["is_active"] is False
        assert (await http.get("/token", headers=basic("alice", PASSWORD))).status_code == 401
        assert len(messages) == 1
        assert messages[0]["To"] == "alice@example.com"
        link = re.search(r"http://hub\.test/confirm/(\S+)", messages[0].get_payload())
        assert link is not None
        confirmed = await http.get(f"/api/v1/confirm/{link.group(1)}")
        assert confirmed.status_code == 200
        assert (await http.get("/token", headers=basic("alice", PASSWORD))).status_code == 200
        assert (await http.get(f"/api/v1/confirm/{link.group(1)}")).status_code == 404
    finally:
        await http.aclose()
        for task in client.app._tasks:
            task.cancel()
        assert client.app.registry is not None
        await client.app.registry.registry.meta.engine.dispose()
