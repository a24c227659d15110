"""An in-process registry per test, driven through httpx's ASGI transport."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from dockyard.db.engine import migrate
from dockyard.registry.app import RegistryApp
from dockyard.server.app import open_registry
from dockyard.server.config import Settings

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Client:
    """httpx plus the few registry moves every test repeats."""

    def __init__(self, http: httpx.AsyncClient, app: RegistryApp) -> None:
        self.http = http
        self.app = app

    async def push_blob(self, name: str, data: bytes) -> str:
        digest = sha256(data)
        response = await self.http.post(f"/v2/{name}/blobs/uploads/?digest={digest}", content=data)
        assert response.status_code == 201, response.text
        return digest

    async def push_image(
        self, name: str, tag: str | None, layers: list[bytes], **extra: object
    ) -> tuple[str, bytes]:
        config = json.dumps({"architecture": "amd64", "os": "linux", "n": len(layers)}).encode()
        body: dict[str, object] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": await self.push_blob(name, config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": await self.push_blob(name, layer),
                    "size": len(layer),
                }
                for layer in layers
            ],
            **extra,
        }
        manifest = json.dumps(body).encode()
        reference = tag or sha256(manifest)
        response = await self.http.put(
            f"/v2/{name}/manifests/{reference}",
            content=manifest,
            headers={"content-type": OCI_MANIFEST},
        )
        assert response.status_code == 201, response.text
        return sha256(manifest), manifest


def error_code(response: httpx.Response) -> str:
    return response.json()["errors"][0]["code"]


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir, **{"auth": "none", **overrides})  # type: ignore[arg-type]
    migrate(settings.db_url)
    return settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    registry = open_registry(settings)
    app = RegistryApp(registry)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry") as http:
        yield Client(http, app)
    await registry.meta.engine.dispose()
