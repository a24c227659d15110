"""Image commands: import (and its safety), images, tag, rmi, inspect, history, prune, load."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.engine.conftest import Dockyard, add_entry, add_file

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="unpacking layers needs root")


def snapshot(root: Path) -> dict[str, list[str]]:
    """What the store holds, to check a refused import changed nothing."""
    result = {}
    for sub in ("images", "layers", "blobs/sha256", "containers"):
        path = root / sub
        result[sub] = sorted(p.name for p in path.iterdir()) if path.exists() else []
    result["tmp"] = (
        sorted(p.name for p in (root / "tmp").iterdir()) if (root / "tmp").exists() else []
    )
    tags = root / "tags.json"
    result["tags"] = [tags.read_text()] if tags.exists() else []
    return result


def tarball(tmp_path: Path, build, name: str = "evil.tar") -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / name
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("dotdot", "'..'"),
        ("absolute", "absolute path"),
        ("symlink-then-file", "symlink"),
        ("relative-symlink-out", "outside the root"),
        ("hardlink-out", "outside the layer"),
        ("too-many", "entries"),
    ],
)
def test_refused_imports_leave_the_store_unchanged(
    dy: Dockyard, bb: str, tmp_path: Path, case: str, message: str
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("original")

    def build(tar: tarfile.TarFile) -> None:
        add_file(tar, "ok", b"fine")
        if case == "dotdot":
            add_file(tar, "../../../../../../" + str(victim).lstrip("/"), b"pwned")
        elif case == "absolute":
            add_file(tar, str(victim), b"pwned")
        elif case == "symlink-then-file":
            add_entry(tar, "esc", tarfile.SYMTYPE, linkname=str(tmp_path))
            add_file(tar, "esc/victim", b"pwned")
        elif case == "relative-symlink-out":
            add_entry(tar, "esc", tarfile.SYMTYPE, linkname="../../../../../../../etc")
        elif case == "hardlink-out":
            add_entry(tar, "h", tarfile.LNKTYPE, linkname="../../victim")
        elif case == "too-many":
            for i in range(60):
                add_file(tar, f"f{i}", b"")

    before = snapshot(dy.root)
    env_limit = {"DOCKYARD_LAYER_MAX_ENTRIES": "50"}
    os.environ.update(env_limit)
    try:
        result = dy("import", str(tarball(tmp_path, build)), "evil", check=False)
    finally:
        for key in env_limit:
            os.environ.pop(key)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert victim.read_text() == "original"
    assert snapshot(dy.root) == before


def test_import_bomb_is_refused(dy: Dockyard, bb: str, tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("zeros")
        info.size = 8 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(gzip.compress(raw.getvalue()))
    before = snapshot(dy.root)
    os.environ["DOCKYARD_LAYER_MAX_BYTES"] = str(1 << 20)
    try:
        result = dy("import", str(bomb), "bomb", check=False)
    finally:
        del os.environ["DOCKYARD_LAYER_MAX_BYTES"]
    assert result.returncode == 1 and "limit" in result.stderr
    assert snapshot(dy.root) == before


def test_import_skips_devices_and_strips_setuid(dy: Dockyard, tmp_path: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        add_entry(tar, "dev", tarfile.DIRTYPE)
        add_entry(tar, "dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0)
        add_file(tar, "su", b"#!/bin/sh\n", mode=0o4755)

    path = tarball(tmp_path, build, "devs.tar")
    result = dy("import", str(path), "devs")
    assert "skipped device node" in result.stderr and "set-id" in result.stderr
    diff_id = json.loads(dy("inspect", "devs").stdout)[0]["RootFS"]["Layers"][0]
    layer = dy.root / "layers" / diff_id[7:] / "diff"
    assert not (layer / "dev/sda").exists()
    assert oct((layer / "su").stat().st_mode & 0o7777) == "0o755"

    dy("import", "--allow-setuid", str(path), "devs:setuid")
    diff_id = json.loads(dy("inspect", "devs:setuid").stdout)[0]["RootFS"]["Layers"][0]
    assert (dy.root / "layers" / diff_id[7:] / "diff/su").stat().st_mode & 0o4000


def test_import_from_stdin_with_changes(dy: Dockyard, rootfs_tar: Path) -> None:
    image_id = dy(
        "import",
        "-c",
        "ENV A=B",
        "-c",
        'CMD ["sh"]',
        "-m",
        "hello",
        "-",
        "me/base:1",
        input=rootfs_tar.read_bytes(),
    ).stdout.strip()
    info = json.loads(dy("inspect", "me/base:1").stdout)[0]
    assert info["Id"] == image_id
    assert info["Config"]["Env"] == ["A=B"] and info["Config"]["Cmd"] == ["sh"]
    assert info["RepoTags"] == ["me/base:1"]
    assert info["Os"] == "linux" and info["Architecture"]
    assert info["Size"] > 1_000_000
    assert "hello" in dy("history", "me/base:1").stdout


def test_same_content_imports_to_the_same_layer(dy: Dockyard, rootfs_tar: Path) -> None:
    dy("import", str(rootfs_tar), "a")
    dy("import", str(rootfs_tar), "b")
    assert len(list((dy.root / "layers").iterdir())) == 1


def test_tag_names_are_normalised_and_rmi_untags(dy: Dockyard, bb: str) -> None:
    dy("tag", "bb", "docker.io/library/alias")
    dy("tag", bb[7:19], "localhost:5000/team/app:v1")
    rows = [line.split()[:3] for line in dy("images").stdout.splitlines()[1:]]
    assert sorted(rows) == sorted(
        [
            ["alias", "latest", bb[7:19]],
            ["bb", "latest", bb[7:19]],
            ["localhost:5000/team/app", "v1", bb[7:19]],
        ]
    )
    refused = dy("rmi", bb[7:19], check=False)
    assert refused.returncode == 1 and "referenced in multiple repositories" in refused.stderr
    assert dy("rmi", "alias").stdout.strip() == "Untagged: alias:latest"
    assert dy("images", "-q").stdout.split() == [bb[7:19]]

    bad = dy("tag", "bb", "Not/Valid", check=False)
    assert bad.returncode == 1 and "lowercase" in bad.stderr

    removed = dy("rmi", "-f", bb[7:19]).stdout.splitlines()
    assert "Untagged: bb:latest" in removed and f"Deleted: {bb}" in removed
    assert dy("images", "-q").stdout == ""
    assert list((dy.root / "layers").iterdir()) == []
    missing = dy("rmi", "bb", check=False)
    assert missing.returncode == 1 and "No such image" in missing.stderr


def test_rmi_refuses_images_containers_use(dy: Dockyard, bb: str) -> None:
    from dockyard.engine.containers import create_container
    from dockyard.engine.store import Store

    create_container(Store(dy.root), "bb", ["true"], name="user")
    refused = dy("rmi", "bb", check=False)
    assert refused.returncode == 1 and "container" in refused.stderr
    assert dy("images", "-q").stdout.split() == [bb[7:19]]


def test_images_prune_removes_dangling(dy: Dockyard, rootfs_tar: Path, tmp_path: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        add_file(tar, "x", b"other")

    first = dy("import", str(tarball(tmp_path, build, "x.tar")), "thing").stdout.strip()
    dy("import", str(rootfs_tar), "thing")  # the tag moves on; the first image dangles
    listing = dy("images").stdout
    assert "<none>" in listing and first[7:19] in listing
    result = dy("image", "prune", "-f").stdout
    assert f"deleted: {first}" in result and "Total reclaimed space" in result
    assert first[7:19] not in dy("images").stdout
    assert len(list((dy.root / "layers").iterdir())) == 1


def _docker_v1_archive(rootfs_tar: Path, path: Path) -> str:
    """What `docker save` wrote before docker 25: <id>/layer.tar, <id>.json, manifest.json."""
    import hashlib

    layer = gzip.decompress(rootfs_tar.read_bytes())
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "config": {"Cmd": ["sh"]},
            "created": "2024-01-01T00:00:00Z",
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs /"}],
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    config_hex = hashlib.sha256(config).hexdigest()
    manifest = [
        {
            "Config": f"{config_hex}.json",
            "RepoTags": ["old/style:1"],
            "Layers": ["abc123/layer.tar"],
        }
    ]
    with tarfile.open(path, "w") as tar:
        add_file(tar, "abc123/layer.tar", layer)
        add_file(tar, "abc123/VERSION", b"1.0")
        add_file(tar, f"{config_hex}.json", config)
        add_file(tar, "manifest.json", json.dumps(manifest).encode())
        add_file(tar, "repositories", json.dumps({"old/style": {"1": "abc123"}}).encode())
    return f"sha256:{config_hex}"


def test_load_pre_25_docker_archive(dy: Dockyard, rootfs_tar: Path, tmp_path: Path) -> None:
    archive = tmp_path / "old.tar"
    image_id = _docker_v1_archive(rootfs_tar, archive)
    packed = tmp_path / "old.tar.gz"
    packed.write_bytes(gzip.compress(archive.read_bytes()))
    assert dy("load", "-i", str(packed)).stdout.strip() == "Loaded image: old/style:1"
    assert dy("images", "-q", "--no-trunc").stdout.strip() == image_id
    history = dy("history", "old/style:1").stdout
    assert "ADD rootfs /" in history


def test_load_refuses_layers_that_do_not_match(dy: Dockyard, tmp_path: Path) -> None:
    config = json.dumps(
        {"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}, "os": "linux"}
    ).encode()
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tar:
        add_file(tar, "c.json", config)
        inner = io.BytesIO()
        with tarfile.open(fileobj=inner, mode="w") as layer:
            add_file(layer, "f", b"x")
        add_file(tar, "l.tar", inner.getvalue())
        add_file(
            tar,
            "manifest.json",
            json.dumps([{"Config": "c.json", "RepoTags": ["bad:1"], "Layers": ["l.tar"]}]).encode(),
        )
    result = dy("load", "-i", str(path), check=False)
    assert result.returncode == 1 and "expected sha256:000" in result.stderr
    assert dy("images", "-q").stdout == ""
    not_archive = tmp_path / "nope.tar"
    with tarfile.open(not_archive, "w") as tar:
        add_file(tar, "hello", b"x")
    result = dy("load", "-i", str(not_archive), check=False)
    assert result.returncode == 1 and "neither manifest.json nor index.json" in result.stderr
