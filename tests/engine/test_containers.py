"""Containers under runc: options, detached runs, logs, stop/start, rm, exit codes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dockyard.engine.mounts import mounts_under
from tests.engine.conftest import Dockyard

pytestmark = pytest.mark.needs_runtime


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def test_run_options(dy: Dockyard, bb: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # the container runs as nobody
    (shared / "in.txt").write_text("from host\n")
    result = dy(
        "run",
        "--rm",
        "-e",
        "GREETING=hello",
        "-w",
        "/work/dir",
        "-u",
        "nobody",
        "-v",
        f"{shared}:/mnt/shared",
        "--hostname",
        "boxy",
        "bb",
        "sh",
        "-c",
        "echo $GREETING; pwd; id -u; id -G; hostname; cat /mnt/shared/in.txt; "
        "echo back > /mnt/shared/out.txt; echo $HOME",
    )
    lines = result.stdout.splitlines()
    assert lines[:3] == ["hello", "/work/dir", "65534"]
    assert "50" in lines[3].split()  # supplementary group from /etc/group
    assert lines[4:] == ["boxy", "from host", "/home"]
    assert (shared / "out.txt").read_text() == "back\n"
    # --rm removed it, and nothing stays mounted
    assert dy("ps", "-a", "-q").stdout == ""
    assert mounts_under(dy.root) == []

    ro = dy("run", "--rm", "-v", f"{shared}:/m:ro", "bb", "touch", "/m/x", check=False)
    assert ro.returncode != 0 and not (shared / "x").exists()


def test_exit_codes(dy: Dockyard, bb: str) -> None:
    assert dy("run", "--rm", "bb", "sh", "-c", "exit 42", check=False).returncode == 42
    missing = dy("run", "--rm", "bb", "no-such-command", check=False, real=True)
    assert missing.returncode == 127
    assert dy("run", "--rm", "nope:latest", "true", check=False).returncode == 1
    # pid 1 ignores SIGKILL from inside; a child killed by it shows up as 128 + 9
    killed = dy("run", "--rm", "bb", "sh", "-c", "sh -c 'kill -9 $$'; exit $?", check=False)
    assert killed.returncode == 137


def test_network_none_has_only_loopback(dy: Dockyard, bb: str) -> None:
    listing = dy("run", "--rm", "--network", "none", "bb", "ls", "/sys/class/net").stdout.split()
    assert listing == ["lo"]


def test_detached_logs_stop_start_rm(dy: Dockyard, bb: str) -> None:
    container_id = dy(
        "run",
        "-d",
        "--name",
        "sleeper",
        "bb",
        "sh",
        "-c",
        "echo started; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
        real=True,
    ).stdout.strip()
    assert len(container_id) == 64
    wait_for(lambda: "started" in dy("logs", "sleeper").stdout)
    ps = dy("ps").stdout
    assert "sleeper" in ps and "Up " in ps and container_id[:12] in ps

    conflict = dy("run", "--name", "sleeper", "bb", "true", check=False)
    assert conflict.returncode == 1 and "already in use" in conflict.stderr
    refused = dy("rm", "sleeper", check=False)
    assert refused.returncode == 1 and "running container" in refused.stderr

    dy("stop", "-t", "5", "sleeper")
    assert "Exited (0)" in dy("ps", "-a").stdout
    assert dy("ps", "-q").stdout == ""
    assert dy("logs", "sleeper").stdout == "started\nbye\n"
    assert mounts_under(dy.root / "containers") == []

    dy("start", "sleeper", real=True)
    wait_for(lambda: dy("logs", "sleeper").stdout.count("started") == 2)
    state = json.loads(dy("inspect", "sleeper").stdout)[0]["State"]
    assert state["Running"] is True
    dy("rm", "-f", "sleeper")
    assert dy("ps", "-a", "-q").stdout == ""
    assert mounts_under(dy.root) == []


def test_logs_follow_until_exit(dy: Dockyard, bb: str) -> None:
    dy(
        "run",
        "-d",
        "--name",
        "counter",
        "bb",
        "sh",
        "-c",
        "for i in 1 2 3; do echo $i; sleep 0.1; done; echo oops >&2",
        real=True,
    )
    followed = dy("logs", "-f", "counter", real=True)
    assert followed.stdout == "1\n2\n3\n" and followed.stderr == "oops\n"
    tail = dy("logs", "--tail", "2", "counter")
    assert (tail.stdout, tail.stderr) == ("3\n", "oops\n")


def test_commit_of_a_container_whose_image_is_gone_is_refused(dy: Dockyard, bb: str) -> None:
    dy("run", "--name", "c", "bb", "touch", "/x")
    dy("rmi", "-f", "bb")
    result = dy("commit", "c", "out", check=False)
    assert result.returncode == 1 and "not found" in result.stderr
    # the container still runs: its layers were kept although no image uses them
    assert dy("start", "-a", "c", check=False).returncode == 0
