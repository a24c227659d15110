"""Running a container under runc: mount its rootfs, write the bundle, pump and log its output.

The process that runs `runc run` is the container's monitor: the CLI itself when attached,
or a detached `python -m dockyard.engine.shim` for `run -d` / `start`. The monitor records the
exit code and unmounts the rootfs when the container ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from dockyard.engine.containers import Container, Containers, monitor_alive, process_start_time
from dockyard.engine.fsutil import read_json, secure_join, write_json
from dockyard.engine.mounts import mount_overlay, unmount
from dockyard.engine.runtime import (
    RuntimeConfigError,
    ensure_init_layer,
    merge_env,
    parse_bind,
    resolve_user,
    runtime_spec,
    write_etc_files,
)
from dockyard.engine.store import Conflict, Store, StoreError
from dockyard.oci.image import now_rfc3339


def runc_binary() -> str:
    found = os.environ.get("DOCKYARD_RUNC") or shutil.which("runc")
    if not found:
        for candidate in ("/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"):
            if os.access(candidate, os.X_OK):
                return candidate
        raise StoreError("runc is not installed (apt-get install runc)")
    return found


def runc(store: Store, *args: str, check: bool = False) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [runc_binary(), "--root", os.fspath(store.runc_root), *args],
        capture_output=True,
        check=check,
    )


def mount_rootfs(store: Store, container: Container) -> None:
    from dockyard.engine.mounts import is_mounted

    if is_mounted(container.rootfs):
        return
    lowers = [ensure_init_layer(store.root / "init")]
    lowers += [store.layer_diff(d) for d in reversed(container.diff_ids)]
    for lower in lowers:
        if not lower.is_dir():
            raise StoreError(f"a layer of image {container.image_id} is missing from the store")
    mount_overlay(
        lowers, container.upper, container.work, container.rootfs, links_dir=store.root / "l"
    )


def prepare_bundle(container: Container) -> None:
    config = container.config
    rootfs = container.rootfs
    user = resolve_user(rootfs, config.get("User") or "")
    cwd = config.get("WorkingDir") or "/"
    workdir = secure_join(rootfs, cwd)
    if not workdir.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chown(workdir, user.uid, user.gid)
    hostname = config.get("Hostname") or container.id[:12]
    env = merge_env(config.get("Env") or [], [], user, hostname)
    mounts = write_etc_files(container.dir, hostname)
    mounts += [parse_bind(b) for b in container.binds]
    spec = runtime_spec(
        rootfs=rootfs.absolute(),
        args=container.argv,
        env=env,
        cwd=cwd,
        user=user,
        hostname=hostname,
        network=container.network,
        mounts=mounts,
    )
    write_json(container.bundle / "config.json", spec)


class _LogWriter:
    """Docker's json-file format, a record per line of output."""

    def __init__(self, path: Path) -> None:
        self.handle = open(path, "ab")  # noqa: SIM115
        self.pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def write(self, stream: str, data: bytes) -> None:
        buffered = self.pending[stream] + data
        *lines, rest = buffered.split(b"\n")
        for line in lines:
            self._record(stream, line + b"\n")
        self.pending[stream] = rest
        self.handle.flush()

    def _record(self, stream: str, data: bytes) -> None:
        entry = {"log": data.decode("utf-8", "replace"), "stream": stream, "time": now_rfc3339()}
        self.handle.write(json.dumps(entry).encode() + b"\n")

    def close(self) -> None:
        for stream, rest in self.pending.items():
            if rest:
                self._record(stream, rest)
        self.handle.close()


def _exit_code(status: int, stderr_tail: bytes) -> int:
    if status < 0:
        return 128 - status
    if status == 1 and b"exec" in stderr_tail:
        if b"no such file or directory" in stderr_tail or b"not found" in stderr_tail:
            return 127
        if b"permission denied" in stderr_tail:
            return 126
    return status


def monitor(
    store: Store,
    container: Container,
    *,
    attach: bool = False,
    stdin: int | None = None,
    stdout: IO[bytes] | None = None,
    stderr: IO[bytes] | None = None,
) -> int:
    """Run the container to completion in this process; returns its exit code."""
    containers = Containers(store)
    me = os.getpid()
    containers.set_state(
        container,
        status="running",
        monitor_pid=me,
        monitor_start=process_start_time(me),
        started_at=now_rfc3339(),
        exit_code=None,
        finished_at=None,
        error=None,
    )
    exit_code = 255
    error = None
    process = None
    try:
        mount_rootfs(store, container)
        prepare_bundle(container)
        runc(store, "delete", "--force", container.id)
        process = subprocess.Popen(
            [
                runc_binary(),
                "--root",
                os.fspath(store.runc_root),
                "run",
                "--bundle",
                os.fspath(container.bundle),
                "--pid-file",
                os.fspath(container.dir / "pid"),
                container.id,
            ],
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        forwarded = _forward_signals(store, container) if attach else {}
        try:
            tail = _pump(process, container, stdout if attach else None, stderr if attach else None)
            exit_code = _exit_code(process.wait(), tail)
        finally:
            for signum, previous in forwarded.items():
                signal.signal(signum, previous)
    except (StoreError, OSError, RuntimeConfigError) as exc:
        error = str(exc)
        if stderr is not None and attach:
            stderr.write(f"dockyard: error starting container: {exc}\n".encode())
            stderr.flush()
        exit_code = 125 if process is None else exit_code
    finally:
        if process is not None and process.poll() is None:
            runc(store, "kill", container.id, "KILL")
            process.wait()
        runc(store, "delete", "--force", container.id)
        with contextlib.suppress(OSError):
            unmount(container.rootfs)
        containers.set_state(
            container,
            status="exited",
            exit_code=exit_code,
            finished_at=now_rfc3339(),
            error=error,
        )
        if container.auto_remove:
            containers.remove_files(container)
    return exit_code


def _forward_signals(store: Store, container: Container) -> dict[int, Any]:
    previous = {}

    def forward(signum: int, _frame: Any) -> None:
        runc(store, "kill", container.id, signal.Signals(signum).name[3:])

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):
            previous[signum] = signal.signal(signum, forward)
    return previous


def _pump(
    process: subprocess.Popen[bytes],
    container: Container,
    stdout: IO[bytes] | None,
    stderr: IO[bytes] | None,
) -> bytes:
    log = _LogWriter(container.log_path)
    tail = b""
    selector = selectors.DefaultSelector()
    assert process.stdout is not None and process.stderr is not None
    selector.register(process.stdout, selectors.EVENT_READ, ("stdout", stdout))
    selector.register(process.stderr, selectors.EVENT_READ, ("stderr", stderr))
    try:
        open_streams = 2
        while open_streams:
            for key, _ in selector.select():
                stream, sink = key.data
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                log.write(stream, data)
                if stream == "stderr":
                    tail = (tail + data)[-4096:]
                if sink is not None:
                    with contextlib.suppress(BrokenPipeError):
                        sink.write(data)
                        sink.flush()
    finally:
        selector.close()
        log.close()
    return tail


def start_detached(store: Store, container: Container, timeout: float = 30.0) -> None:
    """Start the container under a detached monitor and return once it runs (or ended)."""
    containers = Containers(store)
    state = containers.state(container)
    if state.get("status") == "running":
        raise Conflict(f"container {container.name} is already running")
    pid_file = container.dir / "pid"
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()
    containers.set_state(container, status="starting", requested=time.time())
    shim = subprocess.Popen(
        [sys.executable, "-m", "dockyard.engine.shim", os.fspath(store.root), container.id],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(container.dir / "shim.log", "ab"),  # noqa: SIM115
        start_new_session=True,
        close_fds=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_file.exists() or shim.poll() is not None:
            break
        if container.auto_remove and not container.dir.exists():
            return
        time.sleep(0.01)
    if shim.poll() is not None and container.dir.exists():
        state = containers.state(container)
        if state.get("error"):
            raise StoreError(state["error"])


def stop(store: Store, container: Container, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds; waits for the monitor to record it."""
    containers = Containers(store)
    state = containers.state(container)
    if state.get("status") not in ("running", "starting"):
        return
    runc(store, "kill", container.id, "TERM")
    if not _wait_exit(containers, container, timeout):
        runc(store, "kill", "--all", container.id, "KILL")
        if not _wait_exit(containers, container, 10.0):
            raise StoreError(f"container {container.name} did not stop")


def kill(store: Store, container: Container, sig: str = "KILL") -> None:
    runc(store, "kill", container.id, sig)


def _wait_exit(containers: Containers, container: Container, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not container.dir.exists():
            return True
        state = containers.state(container)
        if state.get("status") == "exited":
            return True
        if state.get("status") == "starting" and time.time() - state.get("requested", 0) > 30:
            return True
        time.sleep(0.02)
    return False


def cleanup_orphan(store: Store, container: Container) -> None:
    """After a monitor died: kill what runc still runs for the container and unmount."""
    runc(store, "kill", "--all", container.id, "KILL")
    runc(store, "delete", "--force", container.id)
    with contextlib.suppress(OSError):
        unmount(container.rootfs)


def remove(store: Store, container: Container, *, force: bool = False) -> None:
    containers = Containers(store)
    state = containers.state(container)
    raw_status = (read_json(container.state_path, {}) or {}).get("status")
    if state.get("status") in ("running", "starting") and monitor_alive(state):
        if not force:
            raise Conflict(
                f"You cannot remove a running container {container.id}. "
                "Stop the container before attempting removal or force remove"
            )
        kill(store, container)
        _wait_exit(containers, container, 10.0)
    if raw_status in ("running", "starting"):
        cleanup_orphan(store, container)
    with contextlib.suppress(OSError):
        unmount(container.rootfs)
    containers.remove_files(container)
