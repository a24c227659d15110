"""Automated builds end to end: a real `git push` to a git server whose hook posts the webhook,
a real `dockyard serve` hub whose workers clone, build with runc and push, and the docker CLI
pulling and running what was built."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builds.gitserver import GitServer
from tests.client.conftest import cli_env, dockyard_cli, hub, rootfs_tarball  # noqa: F401
from tests.clients.conftest import DockerCLI, _mounts_under, docker, dockerd  # noqa: F401
from tests.conftest import REPO_ROOT, DockyardServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="builds need root (runc, overlayfs)"),
]

PASSWORD = "correct horse battery"
ALICE = ("alice", PASSWORD)
WORKER_TOKEN = "e2e-worker-token"
ENDED = ("success", "failed", "cancelled", "error")
RULES = [
    {"source_type": "branch", "source_name": "main", "docker_tag": "latest"},
    {"source_type": "tag", "source_name": "/^v([0-9.]+)$/", "docker_tag": "{\\1}"},
]


def api(server: DockyardServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, auth=ALICE, timeout=30)


def push_base(
    server: DockyardServer, rootfs: Path, env: dict[str, str], user: str = "alice"
) -> str:
    """USER/base:1, a public busybox image on the hub, for the Dockerfiles to start FROM."""
    base = f"{server.addr}/{user}/base:1"
    dockyard_cli("import", str(rootfs), base, env=env)
    dockyard_cli("login", "-u", user, "--password-stdin", server.addr, input=PASSWORD, env=env)
    dockyard_cli("push", base, env=env)
    return base


def link(server: DockyardServer, git_server: GitServer, rules: list[dict[str, Any]]) -> None:
    with api(server) as http:
        created = http.post("/api/v1/repositories", json={"name": "alice/app"})
        assert created.status_code == 201, created.text
        linked = http.post(
            "/api/v1/repositories/alice/app/source",
            json={"url": str(git_server.bare), "rules": rules},
        )
        assert linked.status_code == 201, linked.text
    source = linked.json()
    git_server.install_hook(source["webhook_url"], source["webhook_secret"])


def builds(server: DockyardServer) -> list[dict[str, Any]]:
    with api(server) as http:
        return http.get("/api/v1/repositories/alice/app/builds").json()


def wait_for(
    server: DockyardServer, check: Callable[[list[dict[str, Any]]], bool], timeout: float = 180
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = builds(server)
        if check(listed):
            return listed
        time.sleep(0.25)
    pytest.fail(f"builds did not get there in {timeout} s: {listed}\n{server.log_tail(60)}")


def log_of(server: DockyardServer, build_id: int) -> str:
    with api(server) as http:
        entries = http.get(f"/api/v1/builds/{build_id}/logs").json()["entries"]
    return "".join(entry["text"] for entry in entries)


def tag_names(server: DockyardServer) -> list[str]:
    with api(server) as http:
        return sorted(tag["name"] for tag in http.get("/api/v1/repositories/alice/app/tags").json())


def all_ended(count: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda listed: len(listed) >= count and all(b["status"] in ENDED for b in listed)


@pytest.fixture
def git_server(tmp_path: Path) -> GitServer:
    return GitServer(tmp_path / "git", branch="main")


def test_git_push_builds_publishes_and_docker_runs_it(
    hub: Callable[..., DockyardServer],  # noqa: F811
    git_server: GitServer,
    rootfs_tarball: Path,  # noqa: F811
    cli_env: dict[str, str],  # noqa: F811
    docker: DockerCLI,  # noqa: F811
) -> None:
    server = hub({"alice": PASSWORD}, "--allow-local-sources", "--build-workers", "1")
    base = push_base(server, rootfs_tarball, cli_env)
    link(server, git_server, RULES)

    dockerfile = (
        f"FROM {base}\n"
        "ARG SOURCE_COMMIT\n"
        'RUN echo "built from $SOURCE_COMMIT by a git push" > /built\n'
        'CMD ["/bin/cat", "/built"]\n'
    )
    commit = git_server.commit({"Dockerfile": dockerfile}, "The first Dockerfile")
    hook_output = git_server.push()
    assert "webhook: 202" in hook_output
    first = wait_for(server, all_ended(1))[0]
    assert (first["status"], first["commit"], first["docker_tags"]) == (
        "success",
        commit,
        ["latest"],
    ), log_of(server, first["id"])
    assert first["commit_message"] == "The first Dockerfile"
    log = log_of(server, first["id"])
    assert "Step 3/4 : RUN" in log and "Successfully built" in log
    assert "were not consumed" not in log  # only the Hub variables it declares are passed

    image = f"{server.addr}/alice/app:latest"
    docker("pull", image)
    ran = docker("run", "--rm", "--network", "none", image)
    assert ran.stdout.strip() == f"built from {commit} by a git push"

    # A tag that matches /^v([0-9.]+)$/ publishes the captured version.
    git_server.tag("v1.2.3")
    assert "webhook: 202" in git_server.push("v1.2.3")
    tagged = wait_for(server, all_ended(2))[0]
    assert (tagged["status"], tagged["source_type"], tagged["docker_tags"]) == (
        "success",
        "tag",
        ["1.2.3"],
    ), log_of(server, tagged["id"])
    docker("pull", f"{server.addr}/alice/app:1.2.3")
    again = docker("run", "--rm", "--network", "none", f"{server.addr}/alice/app:1.2.3")
    assert again.stdout.strip() == f"built from {commit} by a git push"

    # A push to a branch no rule names builds nothing.
    subprocess.run(
        ["git", "-C", str(git_server.work), "branch", "elsewhere"], check=True, capture_output=True
    )
    assert "webhook: 200" in git_server.push("elsewhere")

    # A broken Dockerfile ends `failed`, with the builder's error in the log.
    broken = git_server.commit(
        {"Dockerfile": f"FROM {base}\nRUN echo about to fail && exit 7\n"}, "Break it"
    )
    git_server.push()
    failed = wait_for(server, all_ended(3))[0]
    assert (failed["status"], failed["commit"], failed["failed_step"]) == (
        "failed",
        broken,
        "build",
    )
    failed_log = log_of(server, failed["id"])
    assert "about to fail" in failed_log
    assert "returned a non-zero code: 7" in failed_log
    assert "7" in (failed["error"] or "")
    assert tag_names(server) == ["1.2.3", "latest"]

    # `dockyard builds logs` prints the same log.
    printed = dockyard_cli(
        "builds", "logs", "--follow", str(first["id"]), "--hub", server.url, env=cli_env
    )
    assert printed.stdout == log

    # A delivery signed with another secret builds nothing.
    hook = git_server.bare / "hooks" / "post-receive"
    hook.write_text(hook.read_text().replace("SECRET = ", "SECRET = 'forged' or ", 1))
    git_server.commit({"README": "forged\n"}, "Forged delivery")
    forged = git_server.push()
    assert "HTTP Error 403" in forged
    time.sleep(1)
    assert len(builds(server)) == 3


def test_cancelling_a_build_stops_its_container(
    hub: Callable[..., DockyardServer],  # noqa: F811
    git_server: GitServer,
    rootfs_tarball: Path,  # noqa: F811
    cli_env: dict[str, str],  # noqa: F811
) -> None:
    server = hub({"alice": PASSWORD}, "--allow-local-sources", "--build-workers", "1")
    base = push_base(server, rootfs_tarball, cli_env)
    link(server, git_server, RULES[:1])
    git_server.commit({"Dockerfile": f"FROM {base}\nRUN sleep 287\n"}, "Sleep a long time")
    git_server.push()
    running = wait_for(server, lambda listed: bool(listed) and sleeping(), timeout=120)[0]
    assert running["status"] == "building"
    with api(server) as http:
        assert http.post(f"/api/v1/builds/{running['id']}/cancel").status_code == 204
    assert wait_until(lambda: not sleeping()), "the cancelled build's container is still running"
    assert builds(server)[0]["status"] == "cancelled"
    assert wait_until(lambda: not containers_of(server)), "the cancelled build left containers"

    # Stopping the hub mid-build stops the build's container too, and leaves no mount behind.
    git_server.commit({"Dockerfile": f"FROM {base}\nRUN sleep 287 && true\n"}, "Sleep again")
    git_server.push()
    wait_for(server, lambda listed: len(listed) == 2 and sleeping(), timeout=120)
    server.stop()
    assert not sleeping(), "the build's container outlived the hub"
    assert not containers_of(server)
    assert not _mounts_under(server.data_dir)

    # A hub killed with kill -9 mid-build cannot clean up; its workers do when it comes back.
    server.start()
    git_server.commit({"Dockerfile": f"FROM {base}\nRUN sleep 287 || true\n"}, "And again")
    git_server.push()
    wait_for(server, lambda listed: len(listed) == 3 and sleeping(), timeout=120)
    server.kill()
    assert sleeping() and containers_of(server)
    server.start()
    assert wait_until(lambda: not sleeping()), "the restarted hub left the old container running"
    assert wait_until(lambda: not containers_of(server) and not _mounts_under(server.data_dir))


def containers_of(server: DockyardServer) -> list[Path]:
    return list((server.data_dir / "builds").glob("worker-*/engine/containers/*"))


def wait_until(check: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def sleeping() -> bool:
    found = subprocess.run(["pgrep", "-f", "sleep 287"], capture_output=True, text=True)
    return bool(found.stdout.split())


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[[DockyardServer, str], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(server: DockyardServer, name: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
        log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115 - the process keeps it
        command = [sys.executable, "-m", "dockyard", "worker", "--hub", server.url]
        command += ["--token", WORKER_TOKEN, "--name", name, "--work-dir", str(tmp_path / name)]
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        log.close()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    subprocess.run(["pkill", "-9", "-f", "sleep 3 && echo slept"], capture_output=True)


def test_a_worker_killed_mid_build_is_replaced_and_the_build_completes_once(
    hub: Callable[..., DockyardServer],  # noqa: F811
    git_server: GitServer,
    rootfs_tarball: Path,  # noqa: F811
    cli_env: dict[str, str],  # noqa: F811
    workers: Callable[[DockyardServer, str], subprocess.Popen[bytes]],
) -> None:
    server = hub(
        {"alice": PASSWORD},
        "--allow-local-sources",
        "--build-workers",
        "0",
        "--worker-token",
        WORKER_TOKEN,
        "--build-lease-seconds",
        "3",
    )
    base = push_base(server, rootfs_tarball, cli_env)
    link(server, git_server, RULES[:1])
    git_server.commit(
        {"Dockerfile": f"FROM {base}\nRUN sleep 3 && echo slept > /slept\nCMD cat /slept\n"},
        "Slow build",
    )
    git_server.push()
    doomed = workers(server, "doomed")
    building = wait_for(
        server, lambda listed: bool(listed) and listed[0]["status"] == "building", timeout=120
    )[0]
    assert building["worker"] == "doomed"
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    rescuer = workers(server, "rescuer")
    done = wait_for(server, all_ended(1), timeout=180)
    assert len(done) == 1
    build = done[0]
    assert (build["status"], build["worker"], build["attempt"]) == ("success", "rescuer", 2), (
        log_of(server, build["id"])
    )
    assert tag_names(server) == ["latest"]

    # A push that changes nothing the Dockerfile uses, built by a worker that never built this
    # repository, takes every step from the previous image in the registry.
    os.kill(rescuer.pid, signal.SIGTERM)
    rescuer.wait()
    workers(server, "newcomer")
    git_server.commit({"README.md": "only the docs change\n"}, "Docs")
    git_server.push()
    second = wait_for(server, all_ended(2), timeout=180)[0]
    log = log_of(server, second["id"])
    assert (second["status"], second["worker"]) == ("success", "newcomer"), log
    assert "Pulled the previous image" in log
    assert log.count(" ---> Using cache") == 2, log
    assert " ---> Running in" not in log
