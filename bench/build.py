"""`dockyard build` beside the Docker engine's classic builder and BuildKit, in one run.

    python bench/build.py [--runs 3] [--no-buildkit]

A private dockerd is started (the tests' fixture logic, tests/clients/conftest.py); the same
busybox base is imported into it and into a fresh Dockyard store. The reference Dockerfile has
eight steps after FROM: a 20 MiB context of 2,560 small files copied in, a RUN writing a 50 MiB
file, a late COPY of one small file. Each tool does, per run: a cold build (no cache: a fresh
Dockyard store; `docker rmi` + `docker builder prune` for docker), a fully cached rebuild, and a
rebuild after editing the file used by the late COPY. Times are wall clock of the CLI command,
the median of the runs; the tools alternate within each run. Then the layer compression
throughput of dockyard.engine.layers (isal gzip) on the 50 MiB layer and on the context layer.
Needs root (runc, overlayfs, dockerd).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.builder.conftest import base_rootfs  # noqa: E402
from tests.clients.conftest import Dockerd  # noqa: E402
from tests.engine.conftest import cleanup_root  # noqa: E402

DOCKERFILE = """\
FROM bb
ENV APP=/app LANG=C.UTF-8
WORKDIR /app
COPY src/ /app/src/
RUN dd if=/dev/urandom of=/app/big.bin bs=1M count=50 2>/dev/null
RUN find /app/src -type f | wc -l > /app/file-count
LABEL org.example.bench=build
COPY late.txt /app/late.txt
CMD ["cat", "/app/late.txt"]
"""
SCENARIOS = ("cold build", "fully cached rebuild", "late COPY file edited")
FILES = 2560
FILE_SIZE = 8192


def make_context(ctx: Path) -> int:
    """The reference context: Dockerfile, 20 MiB of small text files in 64 dirs, late.txt."""
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "late.txt").write_text("late 0\n")
    for index in range(FILES):
        path = ctx / "src" / f"d{index % 64:02d}" / f"f{index:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(os.urandom(FILE_SIZE // 2).hex())
    return FILES * FILE_SIZE


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{result.stdout[-3000:]}\n{result.stderr}")
    return elapsed, result.stdout + result.stderr


class Tool:
    """One builder: `reset()` drops its cache, `build()` builds the context and times it."""

    name = ""

    def reset(self) -> None:
        raise NotImplementedError

    def build(self, cold: bool) -> tuple[float, str]:
        """Build the context; `cold` passes --no-cache (the reset alone leaves docker's classic
        builder its intermediate images, so its "cold" build would hit the cache)."""
        raise NotImplementedError


class Dockyard(Tool):
    name = "dockyard"

    def __init__(self, work: Path, base_tar: Path, ctx: Path) -> None:
        self.work = work
        self.base_tar = base_tar
        self.ctx = ctx
        self.root = work / "store"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "dockyard", "--root", str(self.root), *args]

    def reset(self) -> None:
        cleanup_root(self.root)
        timed(self.cli("import", str(self.base_tar), "bb"), self.env)

    def build(self, cold: bool) -> tuple[float, str]:
        flags = ["--no-cache"] if cold else []
        return timed(self.cli("build", *flags, "-t", "bench/dockyard", str(self.ctx)), self.env)

    def close(self) -> None:
        cleanup_root(self.root)


class Docker(Tool):
    def __init__(self, cli: str, engine: Dockerd, ctx: Path, buildkit: bool) -> None:
        self.name = "BuildKit" if buildkit else "docker classic"
        self.cli = cli
        self.ctx = ctx
        self.tag = "bench/buildkit" if buildkit else "bench/classic"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.env.update(
            DOCKER_HOST=engine.host,
            DOCKER_CONFIG=str(engine.base / "bench-config"),
            DOCKER_BUILDKIT="1" if buildkit else "0",
        )
        self.extra = ["--network", "none"] if buildkit else []  # the engine has no bridge

    def docker(self, *args: str) -> tuple[float, str]:
        return timed([self.cli, *args], self.env)

    def reset(self) -> None:
        subprocess.run([self.cli, "rmi", "-f", self.tag], env=self.env, capture_output=True)
        self.docker("builder", "prune", "-af")

    def build(self, cold: bool) -> tuple[float, str]:
        flags = ["--no-cache"] if cold else []
        return self.docker("build", *self.extra, *flags, "-t", self.tag, str(self.ctx))


def buildkit_cli(engine: Dockerd) -> str | None:
    """A docker CLI that can drive BuildKit: one with buildx, or one older than 23.0
    (built-in BuildKit client). The engine must have BuildKit too (18.09 and later)."""
    seen: set[str] = set()
    for directory in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin"]:
        candidate = os.path.realpath(os.path.join(directory, "docker"))
        if candidate in seen or not os.access(candidate, os.X_OK):
            continue
        seen.add(candidate)
        env = {**os.environ, "DOCKER_HOST": engine.host}
        if (
            subprocess.run(
                [candidate, "buildx", "version"], capture_output=True, env=env
            ).returncode
            == 0
        ):
            return candidate
        version = subprocess.run(
            [candidate, "version", "--format", "{{.Client.Version}}"],
            capture_output=True,
            text=True,
            env=env,
        ).stdout.strip()
        if version and int(version.split(".")[0]) < 23:
            return candidate
    return None


@contextlib.contextmanager
def private_dockerd() -> Iterator[Dockerd]:
    base = Path(tempfile.mkdtemp(prefix="dockyard-bench-dockerd-"))
    engine = Dockerd(base)
    try:
        if not engine.start():
            engine.stop()
            if not engine.start(["--storage-driver", "vfs"]):
                raise SystemExit(f"dockerd did not start\n{engine.log_tail()}")
        yield engine
    finally:
        engine.stop()
        shutil.rmtree(base, ignore_errors=True)


def edit_late_file(ctx: Path, counter: list[int]) -> None:
    counter[0] += 1
    (ctx / "late.txt").write_text(f"late {counter[0]}\n")


def cache_hits(output: str) -> str:
    steps = output.count("Step ")
    return f"{output.count('Using cache')}/{max(steps - 1, 0)}" if steps else "n/a"


def measure(tools: list[Tool], ctx: Path, runs: int) -> tuple[dict, dict]:
    times: dict[str, dict[str, list[float]]] = {t.name: {s: [] for s in SCENARIOS} for t in tools}
    hits: dict[str, dict[str, str]] = {t.name: {} for t in tools}
    counter = [0]
    for run in range(runs):
        for tool in tools if run % 2 == 0 else list(reversed(tools)):
            tool.reset()
            for scenario in SCENARIOS:
                if scenario == "late COPY file edited":
                    edit_late_file(ctx, counter)
                os.sync()  # no tool starts while the previous one's writes are flushed
                seconds, output = tool.build(cold=scenario == "cold build")
                times[tool.name][scenario].append(seconds)
                hits[tool.name][scenario] = cache_hits(output)
            print(
                f"run {run + 1}: {tool.name}: "
                + ", ".join(f"{s} {times[tool.name][s][-1]:.2f} s" for s in SCENARIOS),
                file=sys.stderr,
            )
    return times, hits


def compression(root: Path) -> list[tuple[str, int, float, float]]:
    """(layer, tar bytes, tar-only MB/s, gzip MB/s) for the two big layers of the build."""
    from dockyard.engine.layers import write_layer_blob
    from dockyard.engine.store import Store

    store = Store(root)
    image_id = store.resolve_image("bench/dockyard")
    layers = store.image_config(image_id).diff_ids
    sized = sorted(layers, key=lambda d: store.layer_info(d).get("size", 0), reverse=True)[:2]
    rows = []
    with open(os.devnull, "wb") as sink:
        for diff_id in sized:
            src = store.layer_diff(diff_id)
            start = time.perf_counter()
            _, _, tar_size = write_layer_blob(src, sink, compress=False)
            plain = time.perf_counter() - start
            start = time.perf_counter()
            _, _, gz_size = write_layer_blob(src, sink, compress=True)
            packed = time.perf_counter() - start
            label = "50 MiB random file" if tar_size > 40 << 20 else "20 MiB context files"
            rows.append(
                (
                    f"{label} (gzip {gz_size / tar_size:.0%})",
                    tar_size,
                    tar_size / plain / 1e6,
                    tar_size / packed / 1e6,
                )
            )
    return rows


def report(times: dict, hits: dict, names: list[str], packing: list) -> str:
    median = {n: {s: statistics.median(times[n][s]) for s in SCENARIOS} for n in names}
    others = [n for n in names if n != "dockyard"]
    head = (
        "| scenario | "
        + " | ".join(names)
        + " | "
        + " | ".join(f"dockyard / {n}" for n in others)
        + " |"
    )
    lines = [head, "|" + " --- |" * (1 + len(names) + len(others))]
    for scenario in SCENARIOS:
        cells = [f"{median[n][scenario]:.2f} s" for n in names]
        ratios = [f"{median['dockyard'][scenario] / median[n][scenario]:.2f}x" for n in others]
        lines.append(f"| {scenario} | " + " | ".join(cells + ratios) + " |")
    lines.append("")
    lines.append(
        "Cache hits (Using cache / steps after FROM, last run): "
        + "; ".join(
            f"{n}: " + ", ".join(f"{s} {hits[n][s]}" for s in SCENARIOS)
            for n in names
            if n != "BuildKit"
        )
    )
    lines.append("")
    lines.append(
        "| layer compression (dockyard.engine.layers) | tar bytes | tar only | isal gzip |"
    )
    lines.append("| --- | --- | --- | --- |")
    for label, size, plain, packed in packing:
        lines.append(f"| {label} | {size / 1e6:.1f} MB | {plain:.0f} MB/s | {packed:.0f} MB/s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-buildkit", action="store_true", help="Skip the BuildKit column.")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (runc, overlayfs, dockerd)")

    with tempfile.TemporaryDirectory(prefix="dockyard-bench-build-") as tmp:
        work = Path(tmp)
        ctx = work / "context"
        size = make_context(ctx)
        base_tar = base_rootfs(work / "busybox.tar")
        with private_dockerd() as engine:
            classic = Docker(engine.cli, engine, ctx, buildkit=False)
            timed([engine.cli, "import", str(base_tar), "bb"], classic.env)
            ours = Dockyard(work, base_tar, ctx)
            tools: list[Tool] = [ours, classic]
            kit_cli = None if args.no_buildkit else buildkit_cli(engine)
            if kit_cli is not None:
                tools.append(Docker(kit_cli, engine, ctx, buildkit=True))
            elif not args.no_buildkit:
                print(
                    "no docker CLI here drives BuildKit (needs buildx or a CLI < 23)",
                    file=sys.stderr,
                )
            try:
                times, hits = measure(tools, ctx, args.runs)
                packing = compression(ours.root)
            finally:
                ours.close()
        versions = subprocess.run(
            [engine.cli, "--version"], capture_output=True, text=True
        ).stdout.strip()
    print(
        f"\nreference build: 8 steps after FROM, context {size / 2**20:.0f} MiB in {FILES} "
        f"files, {args.runs} runs (median); {versions}\n"
    )
    print(report(times, hits, [t.name for t in tools], packing))


if __name__ == "__main__":
    main()
