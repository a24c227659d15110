"""htpasswd (Basic) authentication in private-registry mode."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import bcrypt
import httpx
import pytest

from dockyard.registry.app import RegistryApp
from dockyard.server.app import open_registry
from tests.api.conftest import error_code, make_settings


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    htpasswd = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    # `htpasswd -B` writes the $2y$ prefix; accept it as bcrypt does.
    htpasswd.write_text("# users\nalice:" + hashed.replace("$2b$", "$2y$", 1) + "\n")
    settings = make_settings(tmp_path / "data", auth="htpasswd", htpasswd=htpasswd)
    registry = open_registry(settings)
    transport = httpx.ASGITransport(app=RegistryApp(registry))
    async with httpx.AsyncClient(transport=transport, base_url="http://registry") as http:
        yield http
    await registry.meta.engine.dispose()


async def test_anonymous_is_challenged(secured: httpx.AsyncClient) -> None:
    for path in ("/v2/", "/v2/_catalog", "/v2/a/tags/list", "/v2/a/manifests/latest"):
        response = await secured.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Basic realm=")
        assert error_code(response) == "UNAUTHORIZED"


async def test_right_password_works_and_wrong_ones_do_not(secured: httpx.AsyncClient) -> None:
    assert (await secured.get("/v2/", headers=basic("alice", "s3cret"))).status_code == 200
    # A second request is answered from the verification cache: still correct.
    assert (await secured.get("/v2/", headers=basic("alice", "s3cret"))).status_code == 200
    for headers in (
        basic("alice", "wrong"),
        basic("mallory", "s3cret"),
        {"authorization": "Basic !!!notbase64"},
        {"authorization": "Bearer something"},
        {"authorization": "Basic " + base64.b64encode(b"nocolon").decode()},
    ):
        assert (await secured.get("/v2/", headers=headers)).status_code == 401, headers


async def test_upload_needs_credentials(secured: httpx.AsyncClient) -> None:
    response = await secured.post("/v2/a/blobs/uploads/")
    assert response.status_code == 401
    response = await secured.post("/v2/a/blobs/uploads/", headers=basic("alice", "s3cret"))
    assert response.status_code == 202


def test_plaintext_entries_are_refused(tmp_path: Path) -> None:
    from dockyard.registry.auth import HtpasswdAccess

    path = tmp_path / "htpasswd"
    path.write_text("bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
    with pytest.raises(ValueError, match="bcrypt"):
        HtpasswdAccess(path)
