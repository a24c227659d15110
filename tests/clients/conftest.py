"""Real clients against real `dockyard serve` processes: skopeo and the Docker engine.

The tools come from scripts/install-test-deps.sh. A missing tool is a failure, not a skip:
these suites are the proof that Dockyard works with the clients people use. Only the Docker
tests skip, and only when not running as root (dockerd needs it).

- `skopeo`: runs `skopeo …` with an empty auth file of its own (the host's
  ~/.docker/config.json or containers auth.json never leak in) and no TLS verification.
- `dockerd` (session): a private Docker engine: its own --data-root, --exec-root, pidfile,
  unix socket and containerd namespace under one temporary dir, trusting plain-HTTP
  registries on 127.0.0.0/8, with no iptables and no bridge. Torn down with everything it
  mounted.
- `docker`: a `DockerCLI` bound to that engine with a DOCKER_CONFIG private to the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

INSTALL_HINT = "run scripts/install-test-deps.sh (as root) to install the client tools"
COMMAND_TIMEOUT = 180.0


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; {INSTALL_HINT}", pytrace=False)
    return path


def run_tool(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    input: str | None = None,
    timeout: float = COMMAND_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run a client command; on an unexpected failure show its whole output."""
    result = subprocess.run(
        list(argv),
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"command failed with exit code {result.returncode}: {' '.join(argv)}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}",
            pytrace=False,
        )
    return result


# -- skopeo ----------------------------------------------------------------------------------


class Skopeo:
    def __init__(self, binary: str, home: Path) -> None:
        self.binary = binary
        home.mkdir(parents=True, exist_ok=True)
        self.auth_file = home / "auth.json"
        self.auth_file.write_text('{"auths": {}}')
        self.env = {
            **os.environ,
            "REGISTRY_AUTH_FILE": str(self.auth_file),
            "HOME": str(home),
            "TMPDIR": str(home),
            "DOCKER_CONFIG": str(home / "docker-config"),
        }

    def __call__(
        self, *args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return run_tool(
            [self.binary, "--insecure-policy", *args], env=self.env, check=check, timeout=timeout
        )

    def copy(self, source: str, dest: str, *extra: str, check: bool = True):
        """`skopeo copy` with plain HTTP on either side and digests kept or a failure."""
        return self(
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--preserve-digests",
            *extra,
            source,
            dest,
            check=check,
        )


@pytest.fixture
def skopeo(tmp_path: Path) -> Skopeo:
    return Skopeo(require_tool("skopeo"), tmp_path / "skopeo-home")


# -- the Docker engine -------------------------------------------------------------------------


def _mounts_under(base: Path) -> list[str]:
    """Mount points at or below `base`, deepest first (from /proc/self/mountinfo)."""
    prefix = str(base.resolve())
    points = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def _unmount_all(base: Path) -> None:
    for _ in range(3):
        points = _mounts_under(base)
        if not points:
            return
        for point in points:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


class Dockerd:
    """One private dockerd; `.host` is its DOCKER_HOST."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data_root = base / "root"
        self.exec_root = base / "exec"
        self.pidfile = base / "dockerd.pid"
        self.socket = base / "docker.sock"
        self.log_path = base / "dockerd.log"
        self.config_file = base / "daemon.json"
        self.config_file.write_text("{}")  # never read the host's /etc/docker/daemon.json
        self.process: subprocess.Popen[bytes] | None = None
        self.cli = require_tool("docker")

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def command(self, extra: Sequence[str]) -> list[str]:
        namespace = f"dockyard-tests-{os.getpid()}"
        return [
            require_tool("dockerd"),
            "--config-file",
            str(self.config_file),
            "--data-root",
            str(self.data_root),
            "--exec-root",
            str(self.exec_root),
            "--pidfile",
            str(self.pidfile),
            "--host",
            self.host,
            "--containerd-namespace",
            namespace,
            "--containerd-plugins-namespace",
            f"{namespace}-plugins",
            "--insecure-registry",
            "127.0.0.0/8",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--ip-masq=false",
            *extra,
        ]

    def start(self, extra: Sequence[str] = (), timeout: float = 60.0) -> bool:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {' '.join(self.command(extra))}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            probe = subprocess.run(
                [self.cli, "--host", self.host, "version", "--format", "{{.Server.Version}}"],
                capture_output=True,
                env={**env, "DOCKER_CONFIG": str(self.base / "probe-config")},
                check=False,
            )
            if probe.returncode == 0:
                return True
            time.sleep(0.25)
        return False

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)  # its containerd, if it lingers
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
            self.process = None
        _unmount_all(self.base)

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(text[-lines:])


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    if os.geteuid() != 0:
        pytest.skip("the Docker engine tests need root")
    require_tool("dockerd")
    # A short path of its own: unix socket paths (containerd's included) must stay < 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="dockyard-dockerd-"))
    engine = Dockerd(base)
    try:
        started = engine.start()
        if not started:
            # overlay2 may be unavailable (e.g. on an overlay root): fall back to vfs.
            engine.stop()
            started = engine.start(["--storage-driver", "vfs"])
        if not started:
            pytest.fail(f"dockerd did not start\n{engine.log_tail()}", pytrace=False)
        yield engine
    finally:
        engine.stop()
        if not _mounts_under(base):
            shutil.rmtree(base, ignore_errors=True)


class DockerCLI:
    """The docker CLI talking to the private engine, with its own DOCKER_CONFIG."""

    def __init__(self, engine: Dockerd, config_dir: Path) -> None:
        self.engine = engine
        self.config_dir = config_dir
        config_dir.mkdir(parents=True, exist_ok=True)
        # No credential helpers from the host (docker-credential-gcloud and friends).
        (config_dir / "config.json").write_text(json.dumps({"auths": {}}))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.env.update(DOCKER_HOST=engine.host, DOCKER_CONFIG=str(config_dir))

    def __call__(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        return run_tool(
            [self.engine.cli, *args], env=self.env, check=check, input=input, timeout=timeout
        )

    def image_ids(self) -> set[str]:
        out = self("images", "--all", "--quiet", "--no-trunc").stdout
        return set(out.split())


@pytest.fixture
def docker(dockerd: Dockerd, tmp_path: Path) -> Iterator[DockerCLI]:
    cli = DockerCLI(dockerd, tmp_path / "docker-config")
    yield cli
    # Leave the shared engine as we found it: no images between tests.
    images = cli("images", "--quiet", "--no-trunc", "--all", check=False).stdout.split()
    if images:
        cli("rmi", "--force", *sorted(set(images)), check=False)
