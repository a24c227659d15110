"""Dockyard's client beside the real docker CLI, both ways, through one registry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import DockyardServer

from .conftest import HELLO, dockyard_cli

pytestmark = pytest.mark.slow


def test_pushed_by_dockyard_pulled_and_run_by_docker(
    registry: DockyardServer, docker, cli_env, rootfs_tarball: Path
) -> None:
    name = f"{registry.addr}/interop/from-dockyard:v1"
    dockyard_cli("import", str(rootfs_tarball), name, env=cli_env)
    pushed = dockyard_cli("push", name, env=cli_env).stdout
    digest = re.search(r"v1: digest: (sha256:[0-9a-f]{64})", pushed)
    assert digest, pushed
    pulled = docker("pull", name).stdout
    assert f"Digest: {digest[1]}" in pulled
    ran = docker("run", "--rm", "--network", "none", name, "/bin/cat", "/etc/hello").stdout
    assert ran.encode() == HELLO


def test_pushed_by_docker_pulled_and_run_by_dockyard(
    registry: DockyardServer, docker, cli_env, rootfs_tarball: Path
) -> None:
    base = f"{registry.addr}/interop/from-docker"
    docker("import", str(rootfs_tarball), f"{base}:v1")
    docker(
        "run",
        "--name",
        "interop-step",
        "--network",
        "none",
        f"{base}:v1",
        "/bin/sh",
        "-c",
        "echo second layer > /etc/second",
    )
    try:
        docker("commit", "interop-step", f"{base}:v2")
    finally:
        docker("rm", "-f", "interop-step", check=False)
    docker("push", f"{base}:v1")
    digest = re.search(r"digest: (sha256:[0-9a-f]{64})", docker("push", f"{base}:v2").stdout)
    assert digest
    pulled = dockyard_cli("pull", f"{base}:v2", env=cli_env).stdout
    assert f"Digest: {digest[1]}" in pulled and "Pull complete" in pulled
    ran = dockyard_cli(
        "run", "--rm", f"{base}:v2", "/bin/sh", "-c", "cat /etc/hello /etc/second", env=cli_env
    ).stdout
    assert ran.encode() == HELLO + b"second layer\n"
    # every tag, and the shared base layer is not fetched twice
    every = dockyard_cli("pull", "-a", base, env=cli_env).stdout
    assert "Image is up to date" in every and "Downloaded newer image" in every
