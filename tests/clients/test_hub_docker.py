"""The docker CLI against the hub: token auth, identity tokens, search, private repositories."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.clients.conftest import DockerCLI
from tests.clients.test_docker import busybox_rootfs  # noqa: F401 - a fixture
from tests.conftest import DockyardServerFactory

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"


def sign_up(url: str, username: str) -> None:
    response = httpx.post(
        f"{url}/api/v1/users",
        json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
    )
    assert response.status_code == 201, response.text


def test_docker_against_the_hub(
    dockyard_server: DockyardServerFactory,
    docker: DockerCLI,
    busybox_rootfs: Path,  # noqa: F811
) -> None:
    hub = dockyard_server("--auth", "hub")
    sign_up(hub.url, "alice")
    wrong = docker(
        "login", hub.addr, "-u", "alice", "--password-stdin", input="nope\n", check=False
    )
    assert wrong.returncode != 0
    assert "unauthorized" in wrong.stderr.lower() or "401" in wrong.stderr
    config = json.loads((docker.config_dir / "config.json").read_text())
    assert hub.addr not in config.get("auths", {})

    login = docker("login", hub.addr, "-u", "alice", "--password-stdin", input=PASSWORD + "\n")
    assert "Login Succeeded" in login.stdout
    stored = json.loads((docker.config_dir / "config.json").read_text())["auths"][hub.addr]
    # The hub issues a refresh token, which docker keeps instead of the password.
    assert stored.get("identitytoken", "").startswith("dyk_")
    assert PASSWORD not in (docker.config_dir / "config.json").read_text()

    public = f"{hub.addr}/alice/busybox:1"
    hidden = f"{hub.addr}/alice/hidden:1"
    docker("import", str(busybox_rootfs), public)
    docker("tag", public, hidden)
    docker("push", public)
    docker("push", hidden)
    owner = (("alice", PASSWORD),)
    patched = httpx.patch(
        f"{hub.url}/api/v1/repositories/alice/hidden", json={"is_private": True}, auth=owner[0]
    )
    assert patched.status_code == 200

    found = docker("search", f"{hub.addr}/alice").stdout
    assert "alice/busybox" in found
    assert "alice/hidden" not in found

    docker("logout", hub.addr)
    docker("rmi", public, hidden)
    docker("pull", public)
    run = docker("run", "--rm", "--network", "none", public, "/bin/busybox", "echo", "from the hub")
    assert run.stdout.strip() == "from the hub"
    denied = docker("pull", hidden, check=False)
    assert denied.returncode != 0
    assert "denied" in denied.stderr or "not found" in denied.stderr
    anonymous_push = docker("push", public, check=False)
    assert anonymous_push.returncode != 0

    sign_up(hub.url, "bobby")
    docker("login", hub.addr, "-u", "bobby", "--password-stdin", input=PASSWORD + "\n")
    assert docker("pull", hidden, check=False).returncode != 0
    assert "alice/hidden" not in docker("search", f"{hub.addr}/alice").stdout
