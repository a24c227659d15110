"""An in-process hub (registry + token service + API) per test, over httpx's ASGI transport."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from dockyard.db.engine import migrate
from dockyard.hub.context import Hub
from dockyard.server.app import DockyardApp
from dockyard.server.config import Settings

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def basic(user: str, secret: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class HubClient:
    def __init__(self, http: httpx.AsyncClient, app: DockyardApp) -> None:
        self.http = http
        self.app = app

    @property
    def hub(self) -> Hub:
        assert self.app.hub is not None
        return self.app.hub

    async def sign_up(self, username: str, password: str = "correct horse") -> None:
        response = await self.http.post(
            "/api/v1/users",
            json={"username": username, "email": f"{username}@example.com", "password": password},
        )
        assert response.status_code == 201, response.text

    async def token(
        self, scope: str | list[str] | None, auth: dict[str, str] | None = None
    ) -> tuple[str, list[dict[str, object]]]:
        scopes = [scope] if isinstance(scope, str) else (scope or [])
        params = [("service", "dockyard"), *(("scope", s) for s in scopes)]
        response = await self.http.get("/token", params=params, headers=auth or {})
        assert response.status_code == 200, response.text
        token = response.json()["token"]
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        return token, claims["access"]

    async def push_image(
        self, name: str, tag: str, auth: dict[str, str], layer: bytes = b"layer"
    ) -> httpx.Response:
        """Push with a token for push+pull on `name`; returns the manifest PUT's response."""
        token, _ = await self.token(f"repository:{name}:pull,push", auth)
        headers = bearer(token)
        config = b'{"architecture":"amd64","os":"linux"}'
        for blob in (config, layer):
            response = await self.http.post(
                f"/v2/{name}/blobs/uploads/?digest={sha256(blob)}", content=blob, headers=headers
            )
            if response.status_code != 201:
                return response
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha256(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": sha256(layer),
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        return await self.http.put(
            f"/v2/{name}/manifests/{tag}",
            content=manifest,
            headers={**headers, "content-type": OCI_MANIFEST},
        )


def hub_settings(data_dir: Path, **overrides: object) -> Settings:
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir, auth="hub", **overrides)  # type: ignore[arg-type]
    migrate(settings.db_url)
    return settings


async def open_client(settings: Settings) -> tuple[HubClient, httpx.AsyncClient]:
    app = DockyardApp(settings)
    app._start()
    transport = httpx.ASGITransport(app=app)
    http = httpx.AsyncClient(transport=transport, base_url="http://hub.test")
    return HubClient(http, app), http


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[HubClient]:
    client, http = await open_client(hub_settings(tmp_path / "data"))
    yield client
    await http.aclose()
    for task in client.app._tasks:
        task.cancel()
    assert client.app.registry is not None
    await client.app.registry.registry.meta.engine.dispose()
