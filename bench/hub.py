#!/usr/bin/env python3
"""What the hub's token auth costs: token issuance, and manifest GETs with auth on and off.

    python bench/hub.py                              # ~2 minutes
    python bench/hub.py --dockyard-args "--server granian" --rounds 3
    python bench/hub.py --profile /tmp/hub-profile   # py-spy the authenticated manifest GETs

Creates a user with `dockyard user create`, starts `dockyard serve` in hub mode (token auth,
the default) and pushes a small image to the user's public repository with skopeo; then
starts a second `dockyard serve --auth none` on the same data dir, so both serve the same
data. With wrk at 32 connections it measures

- token issuance: `GET /token` with Basic credentials (what docker does with a stored
  password), anonymous `GET /token` (a pull of a public repository), and `POST /token` with
  a refresh token (docker's identity token after `docker login`);
- manifest GET by tag with a Bearer token obtained once and reused, as docker does: the
  owner's token, and an anonymous token for the public repository; against the same GET on
  the `--auth none` server.

The manifest GETs alternate between the servers for `--rounds` rounds (the machine is shared,
so only same-run ratios mean anything); each figure is the median of the rounds. Target: auth
costs at most 20% (hub/none ≥ 0.8). Needs wrk and skopeo; py-spy for --profile.
"""

from __future__ import annotations

import argparse
import base64
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import httpx
from registry import (
    ACCEPT,
    KiB,
    LayoutWriter,
    LoadResult,
    Row,
    Server,
    finish_report,
    free_port,
    machine_load,
    markdown_table,
    py_spy,
    skopeo_copy,
    warm,
    wrk,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD, REPOSITORY = "bench", "bench-password-1", "bench/small"
SERVICE = "dockyard"
FORM = "Content-Type: application/x-www-form-urlencoded"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def dockyard_serve(
    args: argparse.Namespace, name: str, data: Path, work: Path, auth: list[str]
) -> Server:
    port = free_port()
    command = [
        *(sys.executable, "-m", "dockyard", "serve", "--addr", f"127.0.0.1:{port}"),
        *("--data-dir", str(data), "--log-level", "warning", "--no-access-log"),
        *auth,
        *shlex.split(args.dockyard_args),
    ]
    return Server(name, command, port, data, work / f"{name}.log", ready_path="/healthz")


def create_user(data: Path) -> None:
    subprocess.run(
        [
            *(sys.executable, "-m", "dockyard", "user", "create", USER),
            *("--email", f"{USER}@example.com", "--password-stdin", "--data-dir", str(data)),
        ],
        input=PASSWORD + "\n",
        text=True,
        capture_output=True,
        check=True,
        cwd=REPO_ROOT,
    )


def token_query(scope: str) -> str:
    return "/token?" + urlencode({"service": SERVICE, "scope": scope})


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class HubBench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        data = work / "data"
        self.hub = dockyard_serve(args, "hub", data, work, [])
        self.open = dockyard_serve(args, "open", data, work, ["--auth", "none"])
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.profiles: list[str] = []
        self.manifest_digest = ""

    @property
    def servers(self) -> tuple[Server, Server]:
        return self.hub, self.open

    def load(
        self,
        server: Server,
        path: str,
        headers: tuple[str, ...] = (),
        body: str = "",
        method: str = "GET",
    ) -> LoadResult:
        result = wrk(
            server,
            server.base + path,
            method,
            self.args.duration,
            self.args.connections,
            self.work,
            headers,
            body,
        )
        if result.errors:
            self.notes.append(f"{server.name} {method} {path.split('?')[0]}: {result.errors}")
        return result

    # -- setup

    def prepare(self) -> None:
        create_user(self.hub.data_dir)
        log(f"starting the hub on {self.hub.host}")
        self.hub.start()
        image = LayoutWriter(self.work / "layout", int.from_bytes(os.urandom(4))).image(
            [2 * KiB, 24 * KiB, 3 * KiB]
        )
        warm(image.path)
        skopeo_copy(
            f"oci:{image.path}:{image.tag}",
            f"docker://{self.hub.host}/{REPOSITORY}:latest",
            ("--dest-creds", f"{USER}:{PASSWORD}"),
        )
        self.manifest_digest = image.manifest_digest
        log(f"starting the same data dir with --auth none on {self.open.host}")
        self.open.start()
        self.check()

    def token(self, scope: str, authorization: str | None = None) -> str:
        headers = {"authorization": authorization} if authorization else {}
        answer = httpx.get(self.hub.base + token_query(scope), headers=headers)
        if answer.status_code != 200:
            raise RuntimeError(f"GET /token → {answer.status_code} {answer.text[:300]}")
        return str(answer.json()["token"])

    def refresh_token(self) -> str:
        answer = httpx.post(
            self.hub.base + "/token",
            data={
                "grant_type": "password",
                "username": USER,
                "password": PASSWORD,
                "service": SERVICE,
                "client_id": "bench",
                "access_type": "offline",
                "scope": f"repository:{REPOSITORY}:pull",
            },
        )
        if answer.status_code != 200 or "refresh_token" not in answer.json():
            raise RuntimeError(f"POST /token (password) → {answer.status_code} {answer.text}")
        return str(answer.json()["refresh_token"])

    def check(self) -> None:
        """Auth is really on for the hub and off for the other, and both serve the image."""
        path = f"/v2/{REPOSITORY}/manifests/latest"
        anonymous = httpx.get(self.hub.base + path, headers={"accept": ACCEPT})
        if (
            anonymous.status_code != 401
            or "bearer" not in anonymous.headers.get("www-authenticate", "").lower()
        ):
            raise RuntimeError(f"hub: manifest GET without a token → {anonymous.status_code}")
        for server, authorization in (
            (self.hub, "Bearer " + self.token(f"repository:{REPOSITORY}:pull")),
            (self.open, ""),
        ):
            headers = {"accept": ACCEPT}
            if authorization:
                headers["authorization"] = authorization
            answer = httpx.get(server.base + path, headers=headers)
            if answer.headers.get("docker-content-digest") != self.manifest_digest:
                raise RuntimeError(f"{server.name}: manifest GET → {answer.status_code}")

    # -- measurements

    def bench_tokens(self) -> None:
        pull_push = f"repository:{REPOSITORY}:pull,push"
        pull = f"repository:{REPOSITORY}:pull"
        refresh = self.refresh_token()
        cases: list[tuple[str, str, tuple[str, ...], str, str]] = [
            (
                "GET /token, Basic password, scope pull,push",
                token_query(pull_push),
                (f"Authorization: {basic(USER, PASSWORD)}",),
                "",
                "GET",
            ),
            ("GET /token, anonymous, scope pull (public repo)", token_query(pull), (), "", "GET"),
            (
                "POST /token, refresh_token grant (docker's identity token)",
                "/token",
                (FORM,),
                urlencode(
                    {
                        "grant_type": "refresh_token",
                        "refresh_token": refresh,
                        "service": SERVICE,
                        "client_id": "bench",
                        "scope": pull,
                    }
                ),
                "POST",
            ),
        ]
        c = self.args.connections
        for label, path, headers, body, method in cases:
            log(f"hub: {label} for {self.args.duration:g}s")
            result = self.load(self.hub, path, headers, body, method)
            self.rows.append(Row(f"token issuance: {label} (wrk -c{c}), tokens/s", result.rps))
            self.rows.append(Row("  … p99 latency, ms", result.p99_ms, fmt="{:.2f}"))
            self.rows.append(
                Row("  … server CPU per token, µs", result.cpu_us_per_request, fmt="{:.0f}")
            )

    def bench_manifests(self) -> None:
        path = f"/v2/{REPOSITORY}/manifests/latest"
        accept = f"Accept: {ACCEPT}"
        owner = "Authorization: Bearer " + self.token(
            f"repository:{REPOSITORY}:pull", basic(USER, PASSWORD)
        )
        anonymous = "Authorization: Bearer " + self.token(f"repository:{REPOSITORY}:pull")
        cases: dict[str, tuple[Server, tuple[str, ...]]] = {
            "owner": (self.hub, (accept, owner)),
            "anonymous": (self.hub, (accept, anonymous)),
            "open": (self.open, (accept,)),
        }
        for server, headers in cases.values():  # warm up: caches, connections, JIT-free
            wrk(server, server.base + path, "GET", 2, self.args.connections, self.work, headers)
        results: dict[str, list[LoadResult]] = {name: [] for name in cases}
        for round_ in range(self.args.rounds):
            order = list(cases) if round_ % 2 == 0 else list(reversed(cases))
            for name in order:
                server, headers = cases[name]
                log(f"round {round_ + 1}: manifest GET, {name}, for {self.args.duration:g}s")
                results[name].append(self.load(server, path, headers))
        if self.args.profile:
            server, headers = cases["owner"]
            assert server.proc is not None
            log(f"hub: manifest GET with a token under py-spy → {self.args.profile}")
            self.profiles.append(
                py_spy(
                    server.proc.pid,
                    Path(self.args.profile),
                    "hub-manifest-get",
                    lambda: self.load(server, path, headers),
                )
            )

        def median(name: str, value: Callable[[LoadResult], float]) -> float:
            return statistics.median(value(result) for result in results[name])

        c, n = self.args.connections, self.args.rounds
        off_rps = median("open", lambda r: r.rps)
        off_cpu = median("open", lambda r: r.cpu_us_per_request)
        off_p99 = median("open", lambda r: r.p99_ms)
        labels = {
            "owner": "owner's Bearer token (pull,push granted), reused",
            "anonymous": "anonymous Bearer token, public repo, reused",
        }
        for name, label in labels.items():
            self.rows.append(
                Row(
                    f"manifest GET by tag, {label} (wrk -c{c}, median of {n}), req/s",
                    median(name, lambda r: r.rps),
                    off_rps,
                    target="≥ 0.8 (auth costs ≤ 20%)",
                    check=lambda _on, _off, ratio: ratio is not None and ratio >= 0.8,
                )
            )
            self.rows.append(
                Row("  … p99 latency, ms", median(name, lambda r: r.p99_ms), off_p99, "{:.2f}")
            )
            self.rows.append(
                Row(
                    "  … server CPU per request, µs",
                    median(name, lambda r: r.cpu_us_per_request),
                    off_cpu,
                    "{:.1f}",
                )
            )
        for name in cases:
            rounds = ", ".join(f"{r.rps:,.0f}" for r in results[name])
            self.notes.append(f"manifest GET req/s by round, {name}: {rounds}")

    def run(self) -> None:
        self.prepare()
        if not self.args.skip_tokens:
            self.bench_tokens()
        self.bench_manifests()
        for server in self.servers:
            self.rows.append(Row(f"server RSS at the end ({server.name}), MiB", server.rss_mib()))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dockyard-args", default="", help="extra `dockyard serve` arguments for both servers"
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds of each wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of manifest GETs")
    parser.add_argument("--skip-tokens", action="store_true", help="skip token issuance")
    parser.add_argument("--markdown", type=Path, help="also write the results to this file")
    parser.add_argument("--profile", help="py-spy the hub under authenticated GETs into here")
    parser.add_argument("--tmpdir", type=Path, help="where the temporary directory goes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("wrk", "skopeo"):
        if not shutil.which(tool):
            sys.exit(f"missing {tool} (see scripts/install-test-deps.sh)")
    if args.tmpdir:
        args.tmpdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dockyard-hub-bench-", dir=args.tmpdir))
    bench = HubBench(args, work)
    load_before = machine_load()
    started = time.perf_counter()
    failed: BaseException | None = None
    try:
        bench.run()
    except (RuntimeError, subprocess.CalledProcessError, httpx.HTTPError) as exc:
        failed = exc
        if isinstance(exc, subprocess.CalledProcessError):
            log(f"{exc.cmd!r} said:\n{exc.stdout}\n{exc.stderr}")
        for server in bench.servers:
            log(f"{server.name} log tail:\n{server.log_tail()}")
    except KeyboardInterrupt as exc:
        failed = exc
    finally:
        for server in bench.servers:
            server.stop()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    extra = f" {args.dockyard_args}" if args.dockyard_args else ""
    report = [
        f"### `dockyard serve{extra}`: hub (token auth) vs `--auth none`, same data\n",
        f"- wrk -t2 -c{args.connections} -d{args.duration:g}s; {os.cpu_count()} cores; "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        markdown_table(bench.rows, ("auth on", "auth off")),
    ]
    return finish_report(
        report, bench.notes, bench.profiles, started, load_before, args.markdown, failed
    )


if __name__ == "__main__":
    sys.exit(main())
