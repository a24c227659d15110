"""Fixtures for the engine tests: a tiny busybox rootfs, a throwaway store, the CLI."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "echo", "ls", "cat", "rm", "mkdir", "touch", "id", "sleep", "env", "pwd", "ln")
APPLETS += ("test", "mknod", "chmod", "stat", "true", "false", "rmdir", "mv", "printf")


def _needs_root_runtime() -> str | None:
    if os.geteuid() != 0:
        return "the engine tests need root (overlayfs mounts, runc)"
    if not BUSYBOX.exists() or not shutil.which("runc", path="/usr/sbin:/usr/bin:/sbin:/bin"):
        return "needs runc and busybox-static (scripts/install-test-deps.sh)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _needs_root_runtime()
    if reason is None:
        return
    for item in items:
        if "engine" in item.nodeid and "needs_runtime" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_runtime: needs root, runc and busybox")


def add_file(tar: tarfile.TarFile, name: str, data: bytes = b"", mode: int = 0o644, **kw) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = kw.pop("mtime", 1_700_000_000)
    for key, value in kw.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data))


def add_entry(tar: tarfile.TarFile, name: str, kind: bytes, **kw) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = kw.pop("mode", 0o755)
    info.mtime = kw.pop("mtime", 1_700_000_000)
    for key, value in kw.items():
        setattr(info, key, value)
    tar.addfile(info)


def busybox_rootfs(path: Path, *, compress: bool = True) -> Path:
    """bin/busybox, applet symlinks, /etc/passwd and group, a file to delete later."""
    with tarfile.open(path, "w:gz" if compress else "w") as tar:
        for directory in ("bin", "etc", "tmp", "root", "home"):
            add_entry(tar, directory, tarfile.DIRTYPE, mode=0o1777 if directory == "tmp" else 0o755)
        add_file(tar, "bin/busybox", BUSYBOX.read_bytes(), mode=0o755)
        for applet in APPLETS:
            add_entry(tar, f"bin/{applet}", tarfile.SYMTYPE, linkname="busybox", mode=0o777)
        add_file(
            tar,
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/sh\n",
        )
        add_file(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\nstaff:x:50:nobody\n")
        add_file(tar, "etc/doomed", b"delete me\n")
        add_entry(tar, "etc/olddir", tarfile.DIRTYPE)
        add_file(tar, "etc/olddir/a", b"a\n")
        add_file(tar, "etc/olddir/b", b"b\n")
    return path


@pytest.fixture(scope="session")
def rootfs_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not BUSYBOX.exists():
        pytest.skip("needs busybox-static")
    return busybox_rootfs(tmp_path_factory.mktemp("rootfs") / "busybox.tar.gz")


def cleanup_root(root: Path) -> None:
    """Kill whatever runc still runs for this store, unmount everything under it, delete it."""
    from dockyard.engine.mounts import mounts_under, unmount

    runc = shutil.which("runc", path="/usr/sbin:/usr/bin:/sbin:/bin")
    state = root / "runc"
    if runc and state.is_dir():
        listing = subprocess.run(
            [runc, "--root", str(state), "list", "-q"], capture_output=True, text=True
        )
        for container_id in listing.stdout.split():
            subprocess.run(
                [runc, "--root", str(state), "kill", "--all", container_id, "KILL"],
                capture_output=True,
            )
            subprocess.run(
                [runc, "--root", str(state), "delete", "--force", container_id], capture_output=True
            )
    if root.exists():
        for point in mounts_under(root):
            with contextlib.suppress(OSError):
                unmount(Path(point))
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def engine_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "engine"
    try:
        yield root
    finally:
        cleanup_root(root)


class Dockyard:
    """Runs `dockyard --root ROOT …`: in-process through click's runner (fast), or as a real
    `python -m dockyard` process with `real=True`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(
        self,
        *args: str,
        check: bool = True,
        input: bytes | None = None,
        timeout: float = 60,
        real: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        if real:
            result = subprocess.run(
                [sys.executable, "-m", "dockyard", "--root", str(self.root), *args],
                input=input,
                capture_output=True,
                timeout=timeout,
            )
            completed = subprocess.CompletedProcess(
                result.args,
                result.returncode,
                result.stdout.decode(errors="replace"),
                result.stderr.decode(errors="replace"),
            )
        else:
            from click.testing import CliRunner

            from dockyard.cli.main import main

            outcome = CliRunner().invoke(main, ["--root", str(self.root), *args], input=input)
            if outcome.exception is not None and not isinstance(outcome.exception, SystemExit):
                raise outcome.exception
            completed = subprocess.CompletedProcess(
                list(args), outcome.exit_code, outcome.stdout, outcome.stderr
            )
        if check and completed.returncode != 0:
            raise AssertionError(
                f"dockyard {' '.join(args)} exited {completed.returncode}\n"
                f"stdout: {completed.stdout}\nstderr: {completed.stderr}"
            )
        return completed


@pytest.fixture
def dy(engine_root: Path) -> Dockyard:
    return Dockyard(engine_root)


@pytest.fixture
def bb(dy: Dockyard, rootfs_tar: Path) -> str:
    """A busybox image imported as `bb:latest`; returns its ID."""
    return dy("import", str(rootfs_tar), "bb").stdout.strip()
