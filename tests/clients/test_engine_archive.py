"""Dockyard's engine and a real Docker engine exchange images as `docker save` tarballs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.engine.conftest import Dockyard, busybox_rootfs, cleanup_root

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the engine and dockerd need root")


def test_docker_loads_what_dockyard_saves_and_back(docker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dy = Dockyard(tmp_path / "engine")
    back = Dockyard(tmp_path / "back")
    try:
        image_id = dy("import", str(busybox_rootfs(tmp_path / "rootfs.tar.gz")), "dyk/bb").stdout
        dy("run", "--name", "c", "dyk/bb", "sh", "-c", "rm /etc/doomed; echo hi > /hello")
        committed = dy("commit", "-c", 'CMD ["cat", "/hello"]', "c", "dyk/bb:v2").stdout.strip()
        assert committed != image_id.strip()
        archive = tmp_path / "dockyard.tar"
        dy("save", "-o", str(archive), "dyk/bb:v2")

        assert "dyk/bb:v2" in docker("load", "-i", str(archive)).stdout
        info = json.loads(docker("image", "inspect", "dyk/bb:v2").stdout)[0]
        ours = json.loads(dy("inspect", "dyk/bb:v2").stdout)[0]
        assert info["RootFS"]["Layers"] == ours["RootFS"]["Layers"]
        assert info["Config"]["Cmd"] == ["cat", "/hello"]
        ran = docker("run", "--rm", "--network", "none", "dyk/bb:v2", check=False)
        if ran.returncode == 0:
            assert ran.stdout == "hi\n"

        # what docker saves, Dockyard loads to the very same image ID
        again = tmp_path / "docker.tar"
        docker("save", "-o", str(again), "dyk/bb:v2")
        assert back("load", "-i", str(again)).stdout.strip() == "Loaded image: dyk/bb:v2"
        assert back("images", "-q", "--no-trunc").stdout.strip() == committed
        assert back("run", "--rm", "dyk/bb:v2").stdout == "hi\n"
    finally:
        cleanup_root(dy.root)
        cleanup_root(back.root)
