"""The Docker registry token authentication flow, end to end through the hub."""

from __future__ import annotations

import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from tests.hub.conftest import HubClient, basic, bearer


async def test_registry_challenges_with_the_token_realm(hub: HubClient) -> None:
    response = await hub.http.get("/v2/")
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="http://hub.test/token",service="dockyard"')
    scoped = await hub.http.get("/v2/alice/web/tags/list")
    assert 'scope="repository:alice/web:pull"' in scoped.headers["www-authenticate"]


async def test_owner_pushes_and_anonymous_pulls_public(hub: HubClient) -> None:
    await hub.sign_up("alice")
    pushed = await hub.push_image("alice/web", "v1", basic("alice", "correct horse"))
    assert pushed.status_code == 201, pushed.text
    token, access = await hub.token("repository:alice/web:pull")
    assert access == [{"type": "repository", "name": "alice/web", "actions": ["pull"]}]
    got = await hub.http.get("/v2/alice/web/manifests/v1", headers=bearer(token))
    assert got.status_code == 200
    # An anonymous token never carries push.
    _, access = await hub.token("repository:alice/web:pull,push")
    assert access[0]["actions"] == ["pull"]


async def test_nobody_pushes_into_another_namespace(hub: HubClient) -> None:
    await hub.sign_up("alice")
    await hub.sign_up("mallory")
    _, access = await hub.token("repository:alice/web:pull,push", basic("mallory", "correct horse"))
    assert access[0]["actions"] == []
    response = await hub.push_image("alice/web", "v1", basic("mallory", "correct horse"))
    assert response.status_code == 401


async def test_token_for_one_repository_cannot_push_another(hub: HubClient) -> None:
    await hub.sign_up("alice")
    token, _ = await hub.token("repository:alice/a:pull,push", basic("alice", "correct horse"))
    response = await hub.http.post("/v2/alice/b/blobs/uploads/", headers=bearer(token))
    assert response.status_code == 401
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    allowed = await hub.http.post("/v2/alice/a/blobs/uploads/", headers=bearer(token))
    assert allowed.status_code == 202


async def test_forged_tokens_are_refused(hub: HubClient) -> None:
    await hub.sign_up("alice")
    await hub.push_image("alice/web", "v1", basic("alice", "correct horse"))
    now = int(time.time())
    claims = {
        "iss": "dockyard",
        "sub": "alice",
        "aud": "dockyard",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "access": [{"type": "repository", "name": "alice/web", "actions": ["pull", "push"]}],
    }
    other_key = ec.generate_private_key(ec.SECP256R1())
    signer = hub.hub.signer
    forged = {
        "alg none": jwt.encode(claims, key=None, algorithm="none"),
        "another key": jwt.encode(claims, other_key, algorithm="ES256"),
        "HS256 with the public key": jwt.encode(
            claims, "a shared secret of thirty-two bytes!", algorithm="HS256"
        ),
        "expired": signer.issue("alice", claims["access"], seconds=-10),
        "wrong audience": jwt.encode(
            {**claims, "aud": "elsewhere"}, signer._key, algorithm="ES256"
        ),
        "wrong issuer": jwt.encode({**claims, "iss": "evil"}, signer._key, algorithm="ES256"),
    }
    for what, token in forged.items():
        response = await hub.http.post("/v2/alice/web/blobs/uploads/", headers=bearer(token))
        assert response.status_code == 401, what
    genuine = jwt.encode(claims, signer._key, algorithm="ES256")
    assert (
        await hub.http.post("/v2/alice/web/blobs/uploads/", headers=bearer(genuine))
    ).status_code == 202


async def test_read_only_access_token(hub: HubClient) -> None:
    await hub.sign_up("alice")
    await hub.push_image("alice/web", "v1", basic("alice", "correct horse"))
    created = await hub.http.post(
        "/api/v1/user/tokens",
        json={"name": "ci", "scopes": ["read"]},
        headers=basic("alice", "correct horse"),
    )
    assert created.status_code == 201
    pat = created.json()["token"]
    _, access = await hub.token("repository:alice/web:pull,push,delete", basic("alice", pat))
    assert access[0]["actions"] == ["pull"]
    response = await hub.push_image("alice/web", "v2", basic("alice", pat))
    assert response.status_code == 401
    token, _ = await hub.token("repository:alice/web:delete", basic("alice", pat))
    deleted = await hub.http.delete("/v2/alice/web/manifests/v1", headers=bearer(token))
    assert deleted.status_code == 401


async def test_expired_and_revoked_access_tokens(hub: HubClient) -> None:
    await hub.sign_up("alice")
    owner = basic("alice", "correct horse")
    created = await hub.http.post(
        "/api/v1/user/tokens", json={"name": "x", "scopes": ["read", "write"]}, headers=owner
    )
    pat = created.json()["token"]
    listed = (await hub.http.get("/api/v1/user/tokens", headers=owner)).json()
    assert [t["name"] for t in listed] == ["x"]
    assert pat not in str(listed)
    assert (await hub.http.get("/token", headers=basic("alice", pat))).status_code == 200
    revoked = await hub.http.delete(f"/api/v1/user/tokens/{listed[0]['id']}", headers=owner)
    assert revoked.status_code == 204
    assert (await hub.http.get("/token", headers=basic("alice", pat))).status_code == 401
    user = await hub.hub.accounts.user_by_name("alice")
    expired = await hub.hub.tokens.create(user, "old", {"read"}, expires_in=1)
    time.sleep(1.1)
    assert (await hub.http.get("/token", headers=basic("alice", expired))).status_code == 401


async def test_oauth2_password_and_refresh_grants(hub: HubClient) -> None:
    await hub.sign_up("alice")
    response = await hub.http.post(
        "/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": "correct horse",
            "service": "dockyard",
            "client_id": "docker",
            "access_type": "offline",
            "scope": "repository:alice/web:pull,push",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    refresh = body["refresh_token"]
    assert body["scope"] == "repository:alice/web:pull,push"
    again = await hub.http.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "service": "dockyard",
            "client_id": "docker",
            "scope": "repository:alice/web:pull",
        },
    )
    assert again.status_code == 200
    assert "refresh_token" not in again.json()
    bad = await hub.http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": "dyk_nope", "service": "dockyard"},
    )
    assert bad.status_code == 401
    # A refresh token is not a password.
    assert (await hub.http.get("/token", headers=basic("alice", refresh))).status_code == 401
    # GET with offline_token=true (what `docker login` sends) also yields a refresh token.
    offline = await hub.http.get(
        "/token",
        params={"service": "dockyard", "offline_token": "true", "client_id": "docker"},
        headers=basic("alice", "correct horse"),
    )
    assert offline.json()["refresh_token"].startswith("dyk_")


async def test_wrong_password_and_rate_limit(hub: HubClient) -> None:
    await hub.sign_up("alice")
    for _ in range(5):
        response = await hub.http.get("/token", headers=basic("alice", "wrong password"))
        assert response.status_code == 401
    limited = await hub.http.get("/token", headers=basic("alice", "correct horse"))
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0


async def test_private_repository_is_invisible(hub: HubClient) -> None:
    await hub.sign_up("alice")
    await hub.sign_up("bobby")
    owner = basic("alice", "correct horse")
    await hub.push_image("alice/secret", "v1", owner)
    await hub.push_image("alice/open", "v1", owner)
    patched = await hub.http.patch(
        "/api/v1/repositories/alice/secret", json={"is_private": True}, headers=owner
    )
    assert patched.status_code == 200
    for auth in ({}, basic("bobby", "correct horse")):
        _, access = await hub.token("repository:alice/secret:pull", auth)
        assert access[0]["actions"] == []
        # Same answer as for a repository that does not exist at all.
        _, missing = await hub.token("repository:alice/nothing:pull", auth)
        assert missing[0]["actions"] == []
        api = await hub.http.get("/api/v1/repositories/alice/secret", headers=auth)
        assert api.status_code == 404
        assert (
            await hub.http.get("/api/v1/repositories/alice/nothing", headers=auth)
        ).status_code == 404
        search = (await hub.http.get("/v1/search?q=alice", headers=auth)).json()
        assert [r["name"] for r in search["results"]] == ["alice/open"]
    token, _ = await hub.token("registry:catalog:*", basic("bobby", "correct horse"))
    catalog = await hub.http.get("/v2/_catalog", headers=bearer(token))
    assert catalog.json()["repositories"] == ["alice/open"]
    token, _ = await hub.token("registry:catalog:*", owner)
    catalog = await hub.http.get("/v2/_catalog", headers=bearer(token))
    assert catalog.json()["repositories"] == ["alice/open", "alice/secret"]


async def test_official_images_only_admins_push(hub: HubClient) -> None:
    await hub.sign_up("alice")
    _, access = await hub.token("repository:busybox:pull,push", basic("alice", "correct horse"))
    assert access[0]["actions"] == []
    await hub.hub.accounts.create_user("rootadmin", "root@example.com", "correct horse", admin=True)
    response = await hub.push_image("busybox", "latest", basic("rootadmin", "correct horse"))
    assert response.status_code == 201, response.text
    assert response.headers["location"].startswith("/v2/library/busybox/manifests/")
    token, _ = await hub.token("repository:busybox:pull")
    assert (
        await hub.http.get("/v2/busybox/manifests/latest", headers=bearer(token))
    ).status_code == 200
    await hub.hub.pulls.flush()
    search = (await hub.http.get("/v1/search?q=busybox")).json()
    assert search["results"][0] == {
        "name": "busybox",
        "description": "",
        "star_count": 0,
        "pull_count": 1,
        "is_official": True,
        "is_automated": False,
        "is_trusted": False,
    }
