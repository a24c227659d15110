"""Automated builds: from `git push` to a pullable image, beside the bare build, in one run.

    python bench/builds.py [--runs 5] [--pushes 20]

A `dockyard serve --auth hub` with two in-process build workers; a bare git repository whose
post-receive hook posts the signed webhook (tests/builds/gitserver.py). Two measurements:

1. Latency. Per run, one file used by a late COPY is edited, then:
   - bare: `dockyard build` of the same tree in a store of its own (its cache warm from the
     previous run, as the worker's is), then `dockyard push` to the hub — each timed;
   - automated: `git commit` + `git push`, timed until the hub serves the new digest of
     `latest` (manifest HEAD polled every 20 ms, as a pulling client would see it).
   The overhead is automated - bare build (target ≤ 2 s); also shown against build + push.
2. Throughput. `--pushes` branches are pushed one after another (`b-1` … `b-N`, a rule
   `/^b-(.*)$/` → `{\\1}`), each its own `git push` and webhook; every build must end
   `success` on its first attempt, one build per push, one tag per push.

Needs root (runc, overlayfs). Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.builder.conftest import base_rootfs  # noqa: E402
from tests.builds.gitserver import GitServer  # noqa: E402
from tests.conftest import DockyardServer  # noqa: E402

PASSWORD = "bench password 1"
DOCKERFILE = """\
FROM {base}
RUN echo preparing > /prepared && sleep 1
COPY app.txt /app.txt
RUN wc -c /app.txt > /app.size
CMD ["cat", "/app.txt"]
"""
ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
    )
)


class Hub:
    def __init__(self, work: Path) -> None:
        self.server = DockyardServer(
            data_dir=work / "hub",
            log_path=work / "hub.log",
            extra_args=["--auth", "hub", "--allow-local-sources", "--build-workers", "2"],
            startup_timeout=60,
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
        self.env.update(DOCKER_CONFIG=str(work / "docker-config"), DOCKYARD_ROOT=str(work / "bare"))
        create = [sys.executable, "-m", "dockyard", "user", "create", "alice"]
        create += ["--email", "a@b.c", "--password-stdin", "--data-dir", str(self.server.data_dir)]
        subprocess.run(
            create,
            input=PASSWORD,
            text=True,
            check=True,
            capture_output=True,
            env=self.env,
        )
        self.server.start()
        self.http = httpx.Client(base_url=self.server.url, auth=("alice", PASSWORD), timeout=60)

    def cli(self, *args: str, stdin: str | None = None) -> float:
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "dockyard", *args],
            input=stdin,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise SystemExit(f"dockyard {' '.join(args)}: {result.stdout}{result.stderr}")
        return time.perf_counter() - start

    def link(self, name: str, git: GitServer, rules: list[dict[str, str]]) -> None:
        created = self.http.post("/api/v1/repositories", json={"name": f"alice/{name}"})
        created.raise_for_status()
        linked = self.http.post(
            f"/api/v1/repositories/alice/{name}/source",
            json={"url": str(git.bare), "rules": rules},
        )
        linked.raise_for_status()
        git.install_hook(linked.json()["webhook_url"], linked.json()["webhook_secret"])

    def builds(self, name: str) -> list[dict]:
        return self.http.get(f"/api/v1/repositories/alice/{name}/builds?limit=500").json()

    def digest(self, name: str, tag: str, token: str) -> str | None:
        response = httpx.head(
            f"{self.server.url}/v2/alice/{name}/manifests/{tag}",
            headers={"Accept": ACCEPT, "Authorization": f"Bearer {token}"},
        )
        return response.headers.get("docker-content-digest") if response.is_success else None

    def pull_token(self, name: str) -> str:
        response = httpx.get(
            f"{self.server.url}/token",
            params={"service": "dockyard", "scope": f"repository:alice/{name}:pull"},
        )
        return response.json()["token"]


def wait_for_digest(hub: Hub, name: str, tag: str, old: str | None, limit: float = 300) -> float:
    token = hub.pull_token(name)
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        now = hub.digest(name, tag, token)
        if now is not None and now != old:
            return time.perf_counter()
        time.sleep(0.02)
    raise SystemExit(f"alice/{name}:{tag} never changed; see {hub.server.log_path}")


def latency(hub: Hub, work: Path, base: str, runs: int) -> list[dict[str, float]]:
    git = GitServer(work / "latency-git", branch="main")
    git.commit({"Dockerfile": DOCKERFILE.format(base=base), "app.txt": "run 0\n"}, "Start")
    hub.link("app", git, [{"source_type": "branch", "source_name": "main", "docker_tag": "latest"}])
    git.push()
    wait_for_digest(hub, "app", "latest", None)
    bare = f"{hub.server.addr}/alice/bare:latest"
    hub.cli("build", "-q", "-t", bare, str(git.work))
    hub.cli("push", bare)
    token = hub.pull_token("app")
    rows = []
    for run in range(1, runs + 1):
        (git.work / "app.txt").write_text(f"run {run}\n" + "x" * run)
        build = hub.cli("build", "-q", "-t", bare, str(git.work))
        push = hub.cli("push", bare)
        old = hub.digest("app", "latest", token)
        start = time.perf_counter()
        git.commit({}, f"Run {run}")
        git.push()
        pushed = time.perf_counter()
        seen = wait_for_digest(hub, "app", "latest", old)
        rows.append(
            {
                "bare build": build,
                "bare push": push,
                "git push": pushed - start,
                "push to pullable": seen - start,
            }
        )
        print(f"run {run}: " + ", ".join(f"{k} {v:.2f} s" for k, v in rows[-1].items()))
    return rows


def throughput(hub: Hub, work: Path, base: str, pushes: int) -> dict[str, float]:
    git = GitServer(work / "many-git", branch="main")
    git.commit({"Dockerfile": DOCKERFILE.format(base=base), "app.txt": "start\n"}, "Start")
    git.push()
    rule = {"source_type": "branch", "source_name": "/^b-(.*)$/", "docker_tag": "{\\1}"}
    hub.link("many", git, [rule])
    start = time.perf_counter()
    for number in range(1, pushes + 1):
        subprocess.run(
            ["git", "-C", str(git.work), "checkout", "-q", "-B", f"b-{number}", "main"],
            check=True,
        )
        git.commit({"app.txt": f"branch {number}\n"}, f"Branch {number}")
        git.push(f"b-{number}")
    queued = time.perf_counter()
    while True:
        listed = hub.builds("many")
        if len(listed) >= pushes and all(
            b["status"] in ("success", "failed", "error", "cancelled") for b in listed
        ):
            break
        time.sleep(0.1)
    done = time.perf_counter()
    tags = {t["name"] for t in hub.http.get("/api/v1/repositories/alice/many/tags").json()}
    commits = {b["commit"] for b in listed}
    return {
        "pushes": pushes,
        "builds": len(listed),
        "succeeded": sum(b["status"] == "success" for b in listed),
        "first attempt": sum(b["attempt"] == 1 for b in listed),
        "distinct commits": len(commits),
        "tags": len(tags & {str(n) for n in range(1, pushes + 1)}),
        "pushing took": queued - start,
        "all built after": done - start,
        "workers": len({b["worker"] for b in listed}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pushes", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (runc, overlayfs)")
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-builds-") as tmp:
        work = Path(tmp)
        hub = Hub(work)
        try:
            base = f"{hub.server.addr}/alice/base:1"
            hub.cli("import", str(base_rootfs(work / "busybox.tar")), base)
            hub.cli("login", "-u", "alice", "--password-stdin", hub.server.addr, stdin=PASSWORD)
            hub.cli("push", base)
            rows = latency(hub, work, base, args.runs)
            many = throughput(hub, work, base, args.pushes)
        finally:
            hub.server.stop()
            subprocess.run(["umount", "-R", "-l", str(work)], capture_output=True)
    median = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    overhead = median["push to pullable"] - median["bare build"]
    print(f"\n{args.runs} runs (median), 2 in-process workers, 2 cores\n")
    print("| step | seconds |")
    print("| --- | ---: |")
    for key, value in median.items():
        print(f"| {key} | {value:.2f} |")
    print(f"| overhead over the bare build (target ≤ 2 s) | {overhead:.2f} |")
    print(
        "| overhead over the bare build + push | "
        f"{median['push to pullable'] - median['bare build'] - median['bare push']:.2f} |"
    )
    print(f"\n{args.pushes} pushes against 2 workers\n")
    print("| measure | value |")
    print("| --- | ---: |")
    for key, value in many.items():
        print(f"| {key} | {value:.2f} |" if isinstance(value, float) else f"| {key} | {value} |")


if __name__ == "__main__":
    main()
