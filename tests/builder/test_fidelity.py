"""`dockyard build` against the Docker engine's classic builder (DOCKER_BUILDKIT=0): the same
Dockerfiles from the same busybox base give the same filesystem and the same config; images
cross between the two by save/load and run on either side."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.builder.conftest import FIXTURES, build, write_context
from tests.builder.flatten import SavedImage, listing, read_saved
from tests.clients.conftest import DockerCLI, run_tool
from tests.engine.conftest import Dockyard, add_entry, add_file

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root (runc, overlayfs)")

CONFIG_FIELDS = (
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Labels",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "Shell",
)


# --- contexts ---------------------------------------------------------------------------------


def _bundle(path: Path, prefix: str, compression: str = "") -> None:
    """A tarball for ADD: owners, modes, a symlink and a hard link survive extraction."""
    with tarfile.open(path, f"w:{compression}") as tar:
        add_entry(tar, prefix, tarfile.DIRTYPE, mode=0o750, uid=1000, gid=1000)
        add_file(tar, f"{prefix}/data.txt", b"bundled\n", mode=0o640, uid=1000, gid=50)
        add_file(tar, f"{prefix}/tool", b"#!/bin/sh\necho tool\n", mode=0o755)
        add_entry(tar, f"{prefix}/current", tarfile.SYMTYPE, linkname="data.txt", mode=0o777)
        add_entry(
            tar,
            f"{prefix}/same",
            tarfile.LNKTYPE,
            linkname=f"{prefix}/data.txt",
            mode=0o640,
            uid=1000,
            gid=50,
        )
        add_entry(tar, f"{prefix}/empty", tarfile.DIRTYPE, mode=0o700, uid=65534, gid=65534)


def _files_context(ctx: Path) -> None:
    _bundle(ctx / "bundle.tar", "bundle")
    _bundle(ctx / "bundle.tar.gz", "zipped", "gz")
    (ctx / "run.sh").chmod(0o755)
    (ctx / "private.txt").chmod(0o600)
    (ctx / "conf").chmod(0o750)
    (ctx / "conf" / "nested").chmod(0o700)


def _multistage_context(ctx: Path) -> None:
    (ctx / "hello.sh").chmod(0o755)


PREPARE: dict[str, Callable[[Path], None]] = {
    "files": _files_context,
    "multistage": _multistage_context,
}
BUILD_ARGS: dict[str, tuple[str, ...]] = {
    "config": ("--build-arg", "FLAVOR=chocolate", "--label", "built.by=test"),
}


def context(name: str, tmp_path: Path) -> Path:
    """A copy of tests/builder/dockerfiles/NAME with modes that do not depend on the umask."""
    ctx = tmp_path / "contexts" / name
    shutil.copytree(FIXTURES / name, ctx)
    for path in [ctx, *ctx.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    PREPARE.get(name, lambda _: None)(ctx)
    return ctx


# --- what must hold on both sides, so the fixtures are proved to exercise the feature ---------

PRESENT = "present"
ABSENT = "absent"
EXPECTED: dict[str, dict[str, str]] = {
    "multistage": {
        "opt/tools/link": "symlink 0777 0:0 sub/hello.sh",
        "opt/tools/sub": "dir 0755 1000:50",
        "opt/tools/sub/hello.sh": "file 0755 0:0",
        "opt/tools/stamp": "file 0640 0:0",
        "usr/local/bin/middle": "file 0644 0:0",
        "usr/local/bin/hello.sh": "file 0755 0:0",
        "from-index/hello.sh": "file 0755 0:0",
        "never": ABSENT,
        "src": ABSENT,
    },
    "files": {
        "opt/bundle": "dir 0750 1000:1000",
        "opt/bundle/data.txt": "file 0640 1000:50",
        "opt/bundle/current": "symlink 0777 0:0 data.txt",
        "opt/bundle/empty": "dir 0700 65534:65534",
        "opt/bundle/same": "file 0640 1000:50",
        "opt/gz/zipped/tool": "file 0755 0:0",
        "opt/bundle.tar": ABSENT,
        "add/plain.txt": "file 0644 0:0",
        "etc/app/app.conf": "file 0644 65534:50",
        "etc/app/nested": "dir 0700 65534:50",
        "srv/owned/app.txt": "file 0644 65534:50",
        "srv/byname.txt": "file 0644 1000:1000",
        "usr/local/bin/run.sh": "file 0755 0:0",
        "usr/local/bin/private.txt": "file 0600 0:0",
        "ctx/keep.md": "file 0644 0:0",
        "ctx/conf/nested/deep.conf": "file 0644 0:0",
        "ctx/README.md": ABSENT,
        "ctx/secret": ABSENT,
        "ctx/conf/nested/scratch.tmp": ABSENT,
        "ctx/bundle.tar": "file 0644 0:0",
        "ctx/Dockerfile": "file 0644 0:0",
        "ctx/.dockerignore": "file 0644 0:0",
        "home/nobody/uid": "file 0644 65534:65534",
        "tmp/made-by-nobody": "file 0644 65534:65534",
        "tmp/made-by-app": "file 0644 1000:50",
        "home/nobody/work/relative/dir": PRESENT,
    },
    "whiteouts": {
        "data/file": ABSENT,
        "data/dir": ABSENT,
        "etc/doomed": ABSENT,
        "etc/olddir/a": ABSENT,
        "etc/olddir/c": "file 0644 0:0",
        "data/redo/old": ABSENT,
        "data/redo/new": "file 0644 0:0",
        "data/link": "dir 0755 0:0",
        "data/link/in": "file 0644 0:0",
        "data/tofile": "symlink 0777 0:0 keep",
        "data/keep": "file 0700 65534:50",
    },
    "config": {"build-args": "file 0644 0:0", "greeting": "file 0644 0:0"},
    "volumes": {"data/before": PRESENT, "data/after": ABSENT, "kept": PRESENT},
}


def check_expected(image: SavedImage, expected: dict[str, str], side: str) -> None:
    for path, want in expected.items():
        entry = image.files.get(path)
        if want == ABSENT:
            assert entry is None, f"{side}: /{path} should be gone, is {entry}"
        elif want == PRESENT:
            assert entry is not None, f"{side}: /{path} is missing"
        else:
            assert entry is not None, f"{side}: /{path} is missing"
            assert str(entry).startswith(want), f"{side}: /{path} is {entry}, want {want}"


def config_view(config: dict[str, Any]) -> dict[str, Any]:
    """The runtime config fields that the fidelity tests compare, empty values as None."""
    inner = config.get("config") or {}
    view = {field: inner.get(field) or None for field in CONFIG_FIELDS}
    if view["Healthcheck"]:
        view["Healthcheck"] = {k: v for k, v in view["Healthcheck"].items() if v}
    return view


# --- builds -----------------------------------------------------------------------------------


def classic_build(docker: DockerCLI, *args: str) -> str:
    """`docker build` with the classic builder; returns its output."""
    result = run_tool(
        [docker.engine.cli, "build", *args], env={**docker.env, "DOCKER_BUILDKIT": "0"}
    )
    return result.stdout


def dockyard_image(dy: Dockyard, name: str, tmp_path: Path) -> SavedImage:
    archive = tmp_path / f"dockyard-{name.replace('/', '_')}.tar"
    dy("save", "-o", str(archive), name)
    return read_saved(archive)


def docker_image(docker: DockerCLI, name: str, tmp_path: Path) -> SavedImage:
    archive = tmp_path / f"docker-{name.replace('/', '_')}.tar"
    docker("save", "-o", str(archive), name)
    return read_saved(archive)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_same_image_as_the_classic_builder(
    name: str, dy: Dockyard, bb: str, docker: DockerCLI, docker_bb: str, tmp_path: Path
) -> None:
    ctx = context(name, tmp_path)
    tag = f"fidelity/{name}:1"
    args = (*BUILD_ARGS.get(name, ()), "-t", tag, str(ctx))

    classic_build(docker, *args)
    theirs = docker_image(docker, tag, tmp_path)
    check_expected(theirs, EXPECTED[name], "docker")

    ours_build = build(dy, *args)
    assert ours_build.returncode == 0, ours_build.output
    ours = dockyard_image(dy, tag, tmp_path)

    assert listing(ours.files) == listing(theirs.files)
    assert config_view(ours.config) == config_view(theirs.config)
    check_expected(ours, EXPECTED[name], "dockyard")


def test_heredocs_and_chmod(dy: Dockyard, bb: str, tmp_path: Path) -> None:
    """BuildKit-only syntax, checked against the Dockerfile reference's expected results."""
    ctx = context("buildkit_only", tmp_path)
    result = build(dy, "-t", "fidelity/heredocs", str(ctx))
    assert result.returncode == 0, result.output
    image = dockyard_image(dy, "fidelity/heredocs", tmp_path)
    contents = {
        "heredoc-run": b"one\ntwo world\n",
        "heredoc-sh": b"quoted world\n",
        "etc/greeting": b"hello world\n",
        "etc/literal": b"hello ${NAME}\n",
        "multi/one.txt": b"first\n",
        "multi/two.txt": b"second\n",
        "usr/local/bin/script.sh": (ctx / "script.sh").read_bytes(),
        "etc/secret.txt": b"secret\n",
    }
    for path, data in contents.items():
        entry = image.files.get(path)
        assert entry is not None, f"/{path} is missing"
        assert entry.content == _sha256(data), f"/{path} has other content than {data!r}"
    modes = {
        "etc/greeting": (0o644, 0, 0),
        "usr/local/bin/script.sh": (0o750, 0, 0),
        "etc/secret.txt": (0o600, 65534, 50),
    }
    for path, (mode, uid, gid) in modes.items():
        entry = image.files[path]
        assert (entry.mode, entry.uid, entry.gid) == (mode, uid, gid), f"/{path}: {entry}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- interop ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_docker_runs_what_dockyard_built(
    dy: Dockyard, bb: str, docker: DockerCLI, tmp_path: Path
) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {
            "Dockerfile": "FROM bb\nENV WHO=dockyard\n"
            'RUN echo "built by $WHO" > /message\nCMD ["cat", "/message"]\n',
        },
    )
    built = build(dy, "-t", "interop/ours:1", str(ctx))
    assert built.returncode == 0, built.output
    archive = tmp_path / "ours.tar"
    dy("save", "-o", str(archive), "interop/ours:1")

    assert "interop/ours:1" in docker("load", "-i", str(archive)).stdout
    docker_id = docker("image", "inspect", "--format", "{{.Id}}", "interop/ours:1").stdout
    assert docker_id.strip().removeprefix("sha256:").startswith(built.image_id)
    ran = docker("run", "--rm", "--network", "none", "interop/ours:1")
    assert ran.stdout == "built by dockyard\n"


@pytest.mark.slow
def test_dockyard_runs_and_builds_on_what_docker_built(
    dy: Dockyard, docker: DockerCLI, docker_bb: str, tmp_path: Path
) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {"Dockerfile": 'FROM bb\nRUN echo "built by docker" > /message\nCMD ["cat", "/message"]\n'},
    )
    classic_build(docker, "-t", "interop/theirs:1", str(ctx))
    archive = tmp_path / "theirs.tar"
    docker("save", "-o", str(archive), "interop/theirs:1")

    assert dy("load", "-i", str(archive)).stdout.strip() == "Loaded image: interop/theirs:1"
    assert dy("run", "--rm", "interop/theirs:1", real=True).stdout == "built by docker\n"

    on_top = write_context(
        tmp_path / "on-top",
        {
            "Dockerfile": "FROM interop/theirs:1\nRUN cat /message > /copied\n"
            'CMD ["cat", "/copied"]\n'
        },
    )
    built = build(dy, "-t", "interop/layered", str(on_top))
    assert built.returncode == 0, built.output
    assert dy("run", "--rm", "interop/layered", real=True).stdout == "built by docker\n"
