"""The issue's journey: import → images → run → change files → commit → run it → save → load."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.engine.conftest import Dockyard, cleanup_root

pytestmark = pytest.mark.needs_runtime


def test_import_run_commit_save_load(dy: Dockyard, rootfs_tar: Path, tmp_path: Path) -> None:
    image_id = dy("import", str(rootfs_tar), "bb").stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71

    listing = dy("images").stdout.splitlines()
    assert listing[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    row = listing[1].split()
    assert row[:3] == ["bb", "latest", image_id[7:19]]
    assert row[-1].endswith("MB")

    run = dy("run", "bb", "echo", "hi")
    assert run.stdout == "hi\n"

    script = (
        "echo out; echo err >&2; rm /etc/doomed; rm -r /etc/olddir; mkdir /etc/olddir; "
        "echo fresh > /etc/olddir/c; mkdir -p /data/x; echo new > /data/x/f; "
        "ln /data/x/f /data/x/g; exit 3"
    )
    changed = dy("run", "--name", "changer", "bb", "sh", "-c", script, check=False, real=True)
    assert changed.returncode == 3
    assert changed.stdout == "out\n" and "err\n" in changed.stderr

    assert dy("logs", "changer").stdout == "out\n"
    ps = dy("ps", "-a").stdout
    assert "changer" in ps and "Exited (3)" in ps

    committed = dy(
        "commit", "-m", "changed things", "-c", 'CMD ["cat", "/data/x/f"]', "changer", "bb:v2"
    ).stdout.strip()
    assert committed.startswith("sha256:") and committed != image_id

    assert dy("run", "--rm", "bb:v2").stdout == "new\n"
    check = dy(
        "run",
        "--rm",
        "bb:v2",
        "sh",
        "-c",
        "test -e /etc/doomed && echo doomed-present; ls /etc/olddir; cat /etc/passwd | wc -l; "
        "stat -c %h /data/x/g",
        check=False,
    )
    assert "doomed-present" not in check.stdout
    lines = check.stdout.split()
    assert lines[0] == "c"  # the opaque directory hides a and b
    assert lines[-1] == "2"  # the hard link survived the commit

    inspect = json.loads(dy("inspect", "bb:v2").stdout)[0]
    assert inspect["Id"] == committed
    assert inspect["RepoTags"] == ["bb:v2"]
    assert inspect["Config"]["Cmd"] == ["cat", "/data/x/f"]
    assert len(inspect["RootFS"]["Layers"]) == 2
    assert inspect["Parent"] == image_id
    history = dy("history", "bb:v2").stdout.splitlines()
    assert history[1].startswith(committed[7:19]) and "changed things" in history[1]
    assert history[2].startswith(image_id[7:19])

    archive = tmp_path / "out.tar"
    dy("save", "-o", str(archive), "bb:v2")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert {"manifest.json", "index.json", "oci-layout", "repositories"} <= names
    assert manifest[0]["RepoTags"] == ["bb:v2"]
    assert manifest[0]["Config"] == f"blobs/sha256/{committed[7:]}"

    fresh = Dockyard(tmp_path / "fresh")
    try:
        loaded = fresh("load", "-i", str(archive)).stdout
        assert loaded.strip() == "Loaded image: bb:v2"
        assert fresh("images", "-q", "--no-trunc").stdout.strip() == committed
        assert fresh("run", "--rm", "bb:v2").stdout == "new\n"
        # and the layers it re-saves are byte-identical (same digests all the way down)
        again = tmp_path / "again.tar"
        fresh("save", "-o", str(again), "bb:v2")
        with tarfile.open(again) as tar:
            assert set(tar.getnames()) == names
    finally:
        cleanup_root(fresh.root)


def test_oci_layout_round_trip(dy: Dockyard, bb: str, tmp_path: Path) -> None:
    archive = tmp_path / "oci.tar"
    dy("save", "--format", "oci", "-o", str(archive), "bb")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest_name = "blobs/sha256/" + index["manifests"][0]["digest"][7:]
        manifest = json.load(tar.extractfile(manifest_name))  # type: ignore[arg-type]
    assert "manifest.json" not in names
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == (
        "docker.io/library/bb:latest"
    )
    assert manifest["layers"][0]["mediaType"].endswith("tar+gzip")
    assert manifest["config"]["digest"] == bb

    fresh = Dockyard(tmp_path / "fresh")
    try:
        assert fresh("load", "-i", str(archive)).stdout.strip() == "Loaded image: bb:latest"
        assert fresh("images", "-q", "--no-trunc").stdout.strip() == bb
        assert fresh("run", "--rm", "bb", "echo", "ok").stdout == "ok\n"
    finally:
        cleanup_root(fresh.root)


def test_save_to_stdout_and_load_from_stdin(dy: Dockyard, bb: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    data = subprocess.run(
        [sys.executable, "-m", "dockyard", "--root", str(dy.root), "save", "bb"],
        capture_output=True,
        check=True,
    ).stdout
    fresh = Dockyard(tmp_path / "fresh")
    try:
        assert fresh("load", input=data).stdout.strip() == "Loaded image: bb:latest"
        assert fresh("images", "-q", "--no-trunc").stdout.strip() == bb
    finally:
        cleanup_root(fresh.root)
