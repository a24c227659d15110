"""Fixtures shared by every suite: real `dockyard serve` processes and store checks.

- `free_port()`: a TCP port nothing listens on right now.
- `DockyardServer`: one `python -m dockyard serve` subprocess on 127.0.0.1 with its own data
  dir; `.url`, `.addr`, `.data_dir`, `.log_path`, `.kill()`, `.stop()`, `.start()`,
  `.restart()`. Its log is attached to the report of any test that fails while using it.
- `registry` (session): one server with no auth, shared; use a repository name of your own.
- `dockyard_server` (function): a factory, `dockyard_server(*extra_args, env=…, data_dir=…)`,
  for servers a test may kill, restart or configure (auth, workers).
- `write_htpasswd(path, users)`: a bcrypt htpasswd file, made with `htpasswd -Bbn`.
- `assert_store_consistent(data_dir)`: every stored blob hashes to its name, and the
  metadata database only points at content that exists.

Suites import the helpers with `from conftest import …`: this file is the module `conftest`
because tests/ has no __init__.py, so every sub-directory with its own conftest.py must be a
package (have an __init__.py) to keep that name unambiguous.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

# Helper modules (imagegen.py …) live next to this file; make them importable by every suite
# whatever pytest's import mode or package layout, both as `imagegen` and as `tests.imagegen`
# (the repository root is on sys.path with `python -m pytest`, not with a bare `pytest`).
TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
for _path in (TESTS_DIR, REPO_ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
LOG_TAIL_LINES = 200


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DockyardServer:
    """`python -m dockyard serve` as a subprocess in its own process group."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        port: int | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # -- addresses -------------------------------------------------------------------------

    @property
    def addr(self) -> str:
        """HOST:PORT, which is also the registry part of image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- lifecycle -------------------------------------------------------------------------

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "dockyard",
            "serve",
            "--addr",
            self.addr,
            "--data-dir",
            str(self.data_dir),
            # A plain private registry unless the test asks for the hub or htpasswd.
            *([] if {"--auth", "--config"} & set(self.extra_args) else ["--auth", "none"]),
            *self.extra_args,
        ]

    def start(self) -> DockyardServer:
        if self.running():
            raise RuntimeError(f"dockyard server on {self.addr} is already running")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
        env.update(self.env)
        self.starts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=REPO_ROOT,
                start_new_session=True,  # own process group: kill() reaches every worker
            )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Wait until GET /v2/ gets any HTTP answer (401 counts: auth is on)."""
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"dockyard server exited with {self.process.returncode} during startup\n"
                    + self.log_tail()
                )
            try:
                response = httpx.get(f"{self.url}/v2/", timeout=2.0)
                if response.status_code in (200, 401):
                    return
                last_error = RuntimeError(f"/v2/ answered {response.status_code}")
            except httpx.HTTPError as exc:
                last_error = exc
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"dockyard server on {self.addr} not ready after {self.startup_timeout}s "
            f"({last_error!r})\n" + self.log_tail()
        )

    def _signal_group(self, sig: int) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the server and all its workers at once: a crash, no cleanup."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._reap_group()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (graceful shutdown), then SIGKILL if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout=30)
        self._reap_group()

    def _reap_group(self) -> None:
        """Workers of a dead parent may outlive it briefly; make sure none keep the port."""
        assert self.process is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            self._signal_group(signal.SIGKILL)
            time.sleep(0.05)

    def restart(self) -> DockyardServer:
        """Stop (if still running) and start again on the same port and data dir."""
        self.stop()
        return self.start()

    # -- diagnostics -----------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        text = self.log_text().splitlines()
        return f"--- {self.log_path} (last {lines} lines) ---\n" + "\n".join(text[-lines:])

    def __repr__(self) -> str:
        return f"<DockyardServer {self.url} data_dir={self.data_dir}>"


class DockyardServerFactory:
    """What the `dockyard_server` fixture returns; remembers its servers to stop them."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.servers: list[DockyardServer] = []

    def __call__(
        self,
        *extra_args: str,
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        start: bool = True,
    ) -> DockyardServer:
        number = len(self.servers)
        data_dir = data_dir or self.base / f"server{number}" / "data"
        server = DockyardServer(
            data_dir=data_dir,
            log_path=self.base / f"server{number}" / "dockyard.log",
            extra_args=extra_args,
            env=env,
        )
        self.servers.append(server)
        if start:
            server.start()
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardServer]:
    """One shared server without auth for the whole session; pick unique repository names."""
    base = tmp_path_factory.mktemp("registry")
    server = DockyardServer(data_dir=base / "data", log_path=base / "dockyard.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def dockyard_server(tmp_path: Path) -> Iterator[DockyardServerFactory]:
    """Factory of servers private to one test: `dockyard_server("--auth", "htpasswd", …)`."""
    factory = DockyardServerFactory(tmp_path / "dockyard")
    yield factory
    factory.stop_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Attach the log of every Dockyard server a failing test used to its report."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    servers: list[DockyardServer] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, DockyardServer):
            servers.append(value)
        elif isinstance(value, DockyardServerFactory):
            servers.extend(value.servers)
    for server in servers:
        report.sections.append(
            (f"dockyard server log {server.addr} ({report.when})", server.log_tail())
        )


# -- htpasswd ------------------------------------------------------------------------------


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    """An htpasswd file of bcrypt entries, as `htpasswd -Bbn USER PASS` makes them."""
    lines = []
    tool = shutil.which("htpasswd")
    for user, password in users.items():
        if tool:
            out = subprocess.run(
                [tool, "-Bbn", user, password], check=True, capture_output=True, text=True
            ).stdout
            lines.append(out.strip())
        else:  # pragma: no cover - apache2-utils is installed by scripts/install-test-deps.sh
            import bcrypt

            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
            lines.append(f"{user}:{hashed}")
    path.write_text("\n".join(lines) + "\n")
    return path


# -- store consistency -----------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def _blob_files(data_dir: Path) -> dict[str, Path]:
    root = data_dir / "blobs"
    found: dict[str, Path] = {}
    if not root.exists():
        return found
    for algorithm_dir in root.iterdir():
        assert algorithm_dir.is_dir(), f"stray file in blob store: {algorithm_dir}"
        assert algorithm_dir.name == "sha256", f"unexpected algorithm dir {algorithm_dir}"
        for prefix_dir in algorithm_dir.iterdir():
            assert prefix_dir.is_dir(), f"stray file in blob store: {prefix_dir}"
            for blob in prefix_dir.iterdir():
                found[f"{algorithm_dir.name}:{blob.name}"] = blob
    return found


def assert_store_consistent(data_dir: Path, *, metadata: bool = True) -> dict[str, int]:
    """Re-hash every stored blob and check the metadata only points at stored content.

    Returns {digest: size} of every blob on disk. Safe while the server runs: blobs appear by
    atomic rename, so a file under blobs/ is always complete.
    """
    data_dir = Path(data_dir)
    files = _blob_files(data_dir)
    problems: list[str] = []
    sizes: dict[str, int] = {}
    for digest, path in sorted(files.items()):
        encoded = digest.split(":", 1)[1]
        if len(encoded) != 64 or any(c not in "0123456789abcdef" for c in encoded):
            problems.append(f"{path}: name is not a sha256 hex digest")
            continue
        if path.parent.name != encoded[:2]:
            problems.append(f"{path}: stored under the wrong prefix dir {path.parent.name}")
        if not path.is_file():
            problems.append(f"{path}: not a regular file")
            continue
        actual = sha256_file(path)
        if actual != encoded:
            problems.append(f"{path}: content hashes to sha256:{actual}")
        sizes[digest] = path.stat().st_size

    database = data_dir / "dockyard.db"
    if metadata and database.exists():
        uri = f"file:{database}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
            for digest, size in db.execute("SELECT digest, size FROM blobs"):
                if digest not in sizes:
                    problems.append(f"metadata lists blob {digest} but it is not stored")
                elif sizes[digest] != size:
                    problems.append(
                        f"metadata says {digest} has {size} bytes, stored {sizes[digest]}"
                    )
            for (digest,) in db.execute("SELECT DISTINCT digest FROM repository_blobs"):
                if digest not in sizes:
                    problems.append(f"a repository links blob {digest} but it is not stored")
            for (digest,) in db.execute("SELECT DISTINCT digest FROM manifests"):
                if digest not in sizes:
                    problems.append(f"manifest {digest} is in metadata but not stored")
            for repo, tag, digest in db.execute(
                "SELECT r.name, t.name, t.digest FROM tags t "
                "JOIN repositories r ON r.id = t.repository_id "
                "LEFT JOIN manifests m ON m.repository_id = t.repository_id "
                "AND m.digest = t.digest WHERE m.digest IS NULL"
            ):
                problems.append(f"tag {repo}:{tag} points at unknown manifest {digest}")
    assert not problems, "blob store inconsistent:\n  " + "\n  ".join(problems)
    return sizes
