"""The web UI against real `dockyard serve --auth hub` processes, over plain HTTP forms.

- `hub_server` (module): one hub shared by a module's tests; pick usernames of your own.
- `WebUser`: an httpx client that keeps its session cookie and sends each form with the CSRF
  token of the page it came from, as a browser does.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import DockyardServer

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found, f"no CSRF token on {page.url}"
    return found.group(1)


class WebUser:
    def __init__(self, server: DockyardServer, username: str = "") -> None:
        self.username = username
        self.http = httpx.Client(base_url=server.url, timeout=30)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def submit(self, page: str, action: str, data: dict[str, object]) -> httpx.Response:
        """GET `page`, then POST `data` to `action` with that page's CSRF token."""
        token = csrf_of(self.get(page))
        return self.http.post(action, data={"csrf_token": token, **data})

    def sign_up(self) -> WebUser:
        response = self.submit(
            "/signup",
            "/signup",
            {"username": self.username, "email": f"{self.username}@example.com",
             "password": PASSWORD},
        )  # fmt: skip
        assert response.status_code == 303, response.text
        return self

    def create_repository(self, name: str, **fields: str) -> httpx.Response:
        response = self.submit("/new", "/new", {"namespace": self.username, "name": name, **fields})
        assert response.status_code == 303, response.text
        return response

    def close(self) -> None:
        self.http.close()


def push_image(server: DockyardServer, username: str, name: str, tag: str, layer: bytes) -> str:
    """Push a one-layer linux/arm64 image over the registry API as `username`; its digest."""
    auth = (username, PASSWORD)
    scope = f"repository:{name}:pull,push"
    token = httpx.get(f"{server.url}/token", params={"scope": scope}, auth=auth).json()["token"]
    headers = {"authorization": f"Bearer {token}"}
    config = json.dumps({"architecture": "arm64", "os": "linux", "rootfs": {}}).encode()
    descriptors = []
    for blob, media_type in (
        (config, "application/vnd.oci.image.config.v1+json"),
        (layer, "application/vnd.oci.image.layer.v1.tar"),
    ):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        uploaded = httpx.post(
            f"{server.url}/v2/{name}/blobs/uploads/?digest={digest}", content=blob, headers=headers
        )
        assert uploaded.status_code == 201, uploaded.text
        descriptors.append({"mediaType": media_type, "digest": digest, "size": len(blob)})
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptors[0],
            "layers": descriptors[1:],
        }
    ).encode()
    put = httpx.put(
        f"{server.url}/v2/{name}/manifests/{tag}",
        content=manifest,
        headers={**headers, "content-type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert put.status_code == 201, put.text
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


@pytest.fixture(scope="module")
def hub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardServer]:
    base = tmp_path_factory.mktemp("web-hub")
    server = DockyardServer(
        data_dir=base / "data", log_path=base / "dockyard.log", extra_args=["--auth", "hub"]
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def web_user(hub_server: DockyardServer) -> Iterator[Callable[[str], WebUser]]:
    """`web_user("alice")` → a WebUser on the module's hub (not signed up yet); closed after."""
    made: list[WebUser] = []

    def make(username: str) -> WebUser:
        user = WebUser(hub_server, username)
        made.append(user)
        return user

    yield make
    for user in made:
        user.close()
