"""Fixtures for the builder tests: one busybox base image in Dockyard's store and in a private
dockerd, `dockyard build` as a real process, a git daemon serving a bare repository.

The Docker engine fixtures come from tests/clients, the store and CLI runner from tests/engine.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.clients.conftest import DockerCLI, docker, dockerd  # noqa: F401
from tests.conftest import free_port
from tests.engine.conftest import (
    BUSYBOX,
    Dockyard,
    add_entry,
    add_file,
    dy,  # noqa: F401
    engine_root,  # noqa: F401
)

BASE = "bb"
FIXTURES = Path(__file__).parent / "dockerfiles"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Alice",
    "GIT_AUTHOR_EMAIL": "alice@example.com",
    "GIT_COMMITTER_NAME": "Alice",
    "GIT_COMMITTER_EMAIL": "alice@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def base_rootfs(path: Path) -> Path:
    """An uncompressed rootfs tar: busybox with every applet, users, files to delete later."""
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    with tarfile.open(path, "w") as tar:
        for directory in ("bin", "etc", "tmp", "root", "home", "usr", "usr/local", "usr/local/bin"):
            mode = 0o1777 if directory == "tmp" else 0o700 if directory == "root" else 0o755
            add_entry(tar, directory, tarfile.DIRTYPE, mode=mode)
        add_file(tar, "bin/busybox", BUSYBOX.read_bytes(), mode=0o755)
        for applet in sorted(set(applets) - {"busybox"}):
            add_entry(tar, f"bin/{applet}", tarfile.SYMTYPE, linkname="busybox", mode=0o777)
        add_file(
            tar,
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\n"
            b"app:x:1000:1000:app:/home/app:/bin/sh\n"
            b"nobody:x:65534:65534:nobody:/home:/bin/sh\n",
        )
        add_file(tar, "etc/group", b"root:x:0:\napp:x:1000:\nstaff:x:50:nobody\nnogroup:x:65534:\n")
        add_file(tar, "etc/doomed", b"delete me\n")
        add_entry(tar, "etc/olddir", tarfile.DIRTYPE)
        add_file(tar, "etc/olddir/a", b"a\n")
        add_file(tar, "etc/olddir/b", b"b\n")
    return path


@pytest.fixture(scope="session")
def base_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not BUSYBOX.exists():
        pytest.fail("needs busybox-static (scripts/install-test-deps.sh)", pytrace=False)
    return base_rootfs(tmp_path_factory.mktemp("base") / "busybox.tar")


@pytest.fixture
def bb(dy: Dockyard, base_tar: Path) -> str:  # noqa: F811
    """The base imported into the test's Dockyard store as `bb:latest`; returns its ID."""
    return dy("import", str(base_tar), BASE).stdout.strip()


@pytest.fixture
def docker_bb(docker: DockerCLI, base_tar: Path) -> str:  # noqa: F811
    """The same base imported into the private dockerd as `bb:latest`; returns its ID."""
    return docker("import", str(base_tar), BASE).stdout.strip()


# --- dockyard build -------------------------------------------------------------------------


@dataclass
class Step:
    number: int
    instruction: str
    lines: list[str]

    @property
    def cached(self) -> bool:
        return " ---> Using cache" in self.lines

    @property
    def ran(self) -> bool:
        return any(line.startswith(" ---> Running in ") for line in self.lines)


@dataclass
class Build:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def image_id(self) -> str:
        found = re.findall(r"^Successfully built ([0-9a-f]{12,64})$", self.stdout, re.M)
        assert found, f"no 'Successfully built' line:\n{self.output}"
        return found[-1]

    @property
    def steps(self) -> list[Step]:
        steps: list[Step] = []
        for line in self.stdout.splitlines():
            header = re.match(r"^Step (\d+)/(\d+) : (.*)$", line)
            if header:
                steps.append(Step(int(header[1]), header[3], []))
            elif line.startswith("Successfully "):
                break
            elif steps:
                steps[-1].lines.append(line)
        return steps


def build(dy: Dockyard, *args: str, input: bytes | None = None, timeout: float = 120) -> Build:  # noqa: F811
    """`dockyard --root ROOT build ARGS…` as a real process (RUN output goes straight to fd 1)."""
    result = dy("build", *args, check=False, input=input, timeout=timeout, real=True)
    assert "Traceback" not in result.stderr, result.stderr
    return Build(result.returncode, result.stdout, result.stderr)


def write_context(directory: Path, files: dict[str, str | bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
    return directory


# --- a git server -----------------------------------------------------------------------------


def git(*args: str, cwd: Path) -> str:
    env = {**GIT_ENV, "HOME": str(cwd), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env
    )
    return result.stdout.strip()


@dataclass
class GitDaemon:
    base: Path
    port: int

    def url(self, repo: str) -> str:
        return f"git://127.0.0.1:{self.port}/{repo}"


@pytest.fixture
def git_daemon(tmp_path: Path) -> Iterator[GitDaemon]:
    """`git daemon` exporting every repository under a fresh base dir, on a free port."""
    if shutil.which("git") is None:
        pytest.fail("git is not installed", pytrace=False)
    base = tmp_path / "git-served"
    base.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [
            "git",
            "daemon",
            "--export-all",
            "--reuseaddr",
            f"--base-path={base}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("git daemon did not start", pytrace=False)
            time.sleep(0.05)
        yield GitDaemon(base, port)
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        if process.poll() is None:
            process.kill()
            process.wait()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
