"""Builds from private git sources: a username and access token over HTTPS-style smart HTTP,
and an SSH deploy key the hub makes and shows once. The secrets are stored encrypted, never
shown again and never logged."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.builds.conftest import make_repository
from tests.builds.gitserver import GitHttpServer, GitSshServer
from tests.builds.test_end_to_end import ALICE, PASSWORD, builds, log_of, push_base, wait_for
from tests.client.conftest import cli_env, hub, rootfs_tarball  # noqa: F401 - fixtures
from tests.conftest import DockyardServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="builds need root (runc, overlayfs, sshd)"),
]

TOKEN = "ghp_private-source-token-4f9c2a"
RULES = [{"source_type": "branch", "source_name": "trunk", "docker_tag": "latest"}]


def dockerfile(base: str) -> str:
    return f'FROM {base}\nRUN echo from a private source > /origin\nCMD ["cat", "/origin"]\n'


def link(server: DockyardServer, body: dict[str, object]) -> dict[str, object]:
    with httpx.Client(base_url=server.url, auth=ALICE, timeout=30) as http:
        if http.get("/api/v1/repositories/alice/app").status_code == 404:
            assert http.post("/api/v1/repositories", json={"name": "alice/app"}).status_code == 201
        linked = http.post("/api/v1/repositories/alice/app/source", json={**body, "rules": RULES})
        assert linked.status_code == 201, linked.text
        return linked.json()


def build_now(server: DockyardServer) -> dict[str, object]:
    before = len(builds(server))
    with httpx.Client(base_url=server.url, auth=ALICE, timeout=30) as http:
        started = http.post("/api/v1/repositories/alice/app/builds", json={})
        assert started.status_code == 202, started.text
    return wait_for(
        server,
        lambda listed: len(listed) > before
        and listed[0]["status"] in ("success", "failed", "error"),
    )[0]


def stored_anywhere(server: DockyardServer, secret: str) -> list[Path]:
    """Files of the hub's data dir that hold `secret` in plain text."""
    needle = secret.encode()
    return [
        path
        for path in server.data_dir.rglob("*")
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes()
    ]


@pytest.fixture
def http_git(tmp_path: Path) -> Iterator[GitHttpServer]:
    server = GitHttpServer(tmp_path / "http-git", "alice-bot", TOKEN)
    yield server
    server.stop()


def test_username_and_token(
    hub: Callable[..., DockyardServer],  # noqa: F811
    http_git: GitHttpServer,
    rootfs_tarball: Path,  # noqa: F811
    cli_env: dict[str, str],  # noqa: F811
) -> None:
    server = hub({"alice": PASSWORD}, "--build-workers", "1")
    base = push_base(server, rootfs_tarball, cli_env)
    make_repository(http_git.root, {"Dockerfile": dockerfile(base)})
    url = http_git.url("origin.git")

    linked = link(server, {"url": url, "auth": "token", "username": "alice-bot", "token": TOKEN})
    assert TOKEN not in str(linked)
    built = build_now(server)
    log = log_of(server, built["id"])
    assert built["status"] == "success", log
    assert any(line.startswith("POST /origin.git/git-upload-pack") for line in http_git.requests)
    assert TOKEN not in log
    with httpx.Client(base_url=server.url, auth=ALICE) as http:
        source = http.get("/api/v1/repositories/alice/app/source").json()
    assert source["username"] == "alice-bot" and TOKEN not in str(source)
    assert stored_anywhere(server, TOKEN) == []
    assert stored_anywhere(server, "alice-bot")  # the scan does find what is stored in clear
    assert TOKEN not in server.log_text()

    link(server, {"url": url, "auth": "token", "username": "alice-bot", "token": "wrong"})
    refused = build_now(server)
    assert (refused["status"], refused["failed_step"]) == ("failed", "clone")
    assert "wrong" not in log_of(server, refused["id"])


def test_ssh_deploy_key(
    hub: Callable[..., DockyardServer],  # noqa: F811
    rootfs_tarball: Path,  # noqa: F811
    cli_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    server = hub({"alice": PASSWORD}, "--build-workers", "1")
    base = push_base(server, rootfs_tarball, cli_env)
    bare = make_repository(tmp_path / "ssh-git", {"Dockerfile": dockerfile(base)})
    sshd = GitSshServer(tmp_path / "sshd")
    try:
        linked = link(server, {"url": sshd.url(bare), "auth": "ssh"})
        public_key = str(linked["public_key"])
        assert public_key.startswith("ssh-ed25519 ") and "PRIVATE KEY" not in str(linked)
        sshd.start(public_key)
        built = build_now(server)
        log = log_of(server, built["id"])
        assert built["status"] == "success", log
        assert "PRIVATE KEY" not in log
        private_marker = "BEGIN OPENSSH PRIVATE KEY"
        assert stored_anywhere(server, private_marker) == []
        assert private_marker not in server.log_text()
        with httpx.Client(base_url=server.url, auth=ALICE) as http:
            source = http.get("/api/v1/repositories/alice/app/source").json()
        assert "PRIVATE KEY" not in str(source)

        relinked = link(server, {"url": sshd.url(bare), "auth": "ssh"})
        assert relinked["public_key"] != public_key  # a new key: the old one no longer works
        refused = build_now(server)
        assert (refused["status"], refused["failed_step"]) == ("failed", "clone")
    finally:
        sshd.stop()
