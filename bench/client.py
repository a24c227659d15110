"""Dockyard's registry client beside `skopeo copy`, in one run against Dockyard servers.

    python bench/client.py [--runs 3] [--big-mib 256] [--layers 100] [--out FILE.md]

Two images, written as an OCI layout (skopeo reads it as `oci:`; Dockyard's client reads the
same blob files): one layer of BIG MiB of random bytes, and LAYERS layers of 256 KiB each.
Every push goes to a fresh server (same binary and settings) so nothing is deduplicated; the
pulls read from one server that holds both images and write into a directory (skopeo `dir:`,
Dockyard: verified blobs in a sink directory). `dockyard pull` into a local store (which also
unpacks the layers) is measured too. Each figure is the median of the runs; peak RSS is the
process's own maximum resident set (wait4), in MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


# --- images --------------------------------------------------------------------------------


def _blob(layout: Path, data: bytes | None = None, path: Path | None = None) -> tuple[str, int]:
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    if data is not None:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}", len(data)
    assert path is not None
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    digest = hasher.hexdigest()
    size = path.stat().st_size
    os.replace(path, blobs / digest)
    return f"sha256:{digest}", size


def _layer_file(path: Path, size: int, seed: int) -> None:
    """An uncompressed layer tar with one file of `size` pseudo-random bytes (incompressible)."""
    with open(path, "wb") as out, tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(f"data/blob{seed}.bin")
        info.size = size
        info.mtime = 1_700_000_000

        class Noise:
            """Seeded random bytes: nothing for gzip to gain, so no tool can win by compressing."""

            def __init__(self) -> None:
                self.left = size
                self.random = random.Random(seed)

            def read(self, n: int) -> bytes:
                n = min(n, self.left)
                self.left -= n
                return self.random.randbytes(n)

        tar.addfile(info, Noise())  # type: ignore[arg-type]


def make_image(layout: Path, tag: str, layer_sizes: list[int]) -> dict:
    work = layout / "work"
    work.mkdir(parents=True, exist_ok=True)
    layers, diff_ids = [], []
    for n, size in enumerate(layer_sizes):
        path = work / f"layer{n}"
        _layer_file(path, size, seed=hash((tag, n)) & 0xFFFFFF)
        digest, blob_size = _blob(layout, path=path)
        layers.append({"mediaType": LAYER_TAR, "digest": digest, "size": blob_size})
        diff_ids.append(digest)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    config_digest, config_size = _blob(layout, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": layers,
        }
    ).encode()
    digest, size = _blob(layout, manifest)
    index_path = layout / "index.json"
    index = (
        json.loads(index_path.read_text())
        if index_path.exists()
        else {
            "schemaVersion": 2,
            "manifests": [],
        }
    )
    index["manifests"].append(
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    index_path.write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    shutil.rmtree(work)
    return {"tag": tag, "manifest": manifest, "digest": digest}


# --- measured processes -----------------------------------------------------------------------


def measure(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one process.

    The peak RSS comes from GNU time: a child forked straight from this (larger) Python process
    would report this process's RSS as its own peak from before its exec.
    """
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        result = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", report.name, *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        wall = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.decode()[-2000:]}")
        return wall, int(report.read().split()[-1]) / 1024


def skopeo(*args: str) -> list[str]:
    return [
        "skopeo",
        "--insecure-policy",
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--preserve-digests",  # push the layers as they are, as Dockyard does (no recompression)
        *args,
    ]


def client_cmd(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


async def _client_push(addr: str, layout: Path, repo: str, tag: str) -> None:
    from dockyard.client.registry import RegistryClient
    from dockyard.client.transfer import push_image

    blobs = layout / "blobs" / "sha256"

    class Source:
        def blob_path(self, digest: str) -> Path:
            return blobs / digest.split(":")[1]

        def manifest(self, digest: str) -> tuple[bytes, str]:
            raise KeyError(digest)

        def mount_sources(self, digest: str) -> list[str]:
            return []

    index = json.loads((layout / "index.json").read_text())
    entry = next(
        m
        for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == tag
    )
    data = (blobs / entry["digest"].split(":")[1]).read_bytes()
    async with RegistryClient(addr) as client:
        await push_image(client, repo, tag, data, entry["mediaType"], Source())


async def _client_pull(addr: str, repo: str, tag: str, sink: Path) -> None:
    from dockyard.client.registry import RegistryClient
    from dockyard.client.transfer import pull_image

    async with RegistryClient(addr) as client:
        await pull_image(client, repo, tag, sink)


def ratio_table(
    results: dict[tuple[str, str], list[tuple[float, float]]],
    cases: list[tuple[str, str]],
    runs: int,
) -> str:
    """One row per operation: both tools' wall time and peak RSS, and skopeo/dockyard ratios."""
    lines = [
        "| operation | skopeo s | dockyard s | time ratio | skopeo RSS MiB | dockyard RSS MiB "
        "| dockyard pull CLI s (RSS MiB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    labels = dict(cases)
    wall = {key: statistics.median(v[0] for v in values) for key, values in results.items()}
    rss = {key: max(v[1] for v in values) for key, values in results.items()}
    for operation in dict.fromkeys(op for op, _ in results):
        kind, _, tag = operation.partition(" ")
        skopeo_, dockyard, cli = ((operation, t) for t in ("skopeo", "dockyard", "cli"))
        cli_cell = f"{wall[cli]:.2f} ({rss[cli]:.0f})" if cli in wall else "-"
        lines.append(
            f"| {kind} {labels[tag]} | {wall[skopeo_]:.2f} | {wall[dockyard]:.2f} "
            f"| {wall[skopeo_] / wall[dockyard]:.2f} x | {rss[skopeo_]:.0f} "
            f"| {rss[dockyard]:.0f} | {cli_cell} |"
        )
    return "\n".join(lines) + f"\n\n(median of {runs} runs)"


# --- the run ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--out", type=Path, help="Write the table as a Markdown section here.")
    args = parser.parse_args()

    from conftest import DockyardServer

    base = Path(tempfile.mkdtemp(prefix="bench-client-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    # skopeo keeps a blob-location cache under HOME: start it empty, and keep the host's clean
    skopeo_env = dict(env, HOME=str(base / "skopeo-home"), TMPDIR=str(base))
    try:
        layout = base / "layout"
        t0 = time.perf_counter()
        make_image(layout, "big", [args.big_mib << 20])
        make_image(layout, "many", [256 << 10] * args.layers)
        print(f"images written in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

        results: dict[tuple[str, str], list[tuple[float, float]]] = {}

        def record(key: tuple[str, str], value: tuple[float, float]) -> None:
            results.setdefault(key, []).append(value)

        cases = [("big", f"1 layer, {args.big_mib} MiB"), ("many", f"{args.layers} layers")]
        servers: list[DockyardServer] = []
        for run in range(args.runs):
            for tag, _ in cases:
                for tool in ("skopeo", "dockyard"):
                    server = DockyardServer(
                        base / f"push-{run}-{tag}-{tool}" / "data",
                        base / f"push-{run}-{tag}-{tool}" / "log",
                    ).start()
                    try:
                        if tool == "skopeo":
                            value = measure(
                                skopeo(
                                    f"oci:{layout}:{tag}",
                                    f"docker://{server.addr}/bench/{tag}:{tag}",
                                ),
                                skopeo_env,
                            )
                        else:
                            value = measure(
                                client_cmd("_push", server.addr, str(layout), f"bench/{tag}", tag),
                                env,
                            )
                        record((f"push {tag}", tool), value)
                    finally:
                        server.stop()
                        shutil.rmtree(server.data_dir, ignore_errors=True)
        source = DockyardServer(base / "pull" / "data", base / "pull" / "log").start()
        servers.append(source)
        try:
            for tag, _ in cases:
                measure(client_cmd("_push", source.addr, str(layout), f"bench/{tag}", tag), env)
            for run in range(args.runs):
                for tag, _ in cases:
                    out = base / f"out-{run}-{tag}"
                    record(
                        (f"pull {tag}", "skopeo"),
                        measure(
                            skopeo(f"docker://{source.addr}/bench/{tag}:{tag}", f"dir:{out}-s"),
                            skopeo_env,
                        ),
                    )
                    record(
                        (f"pull {tag}", "dockyard"),
                        measure(
                            client_cmd("_pull", source.addr, f"bench/{tag}", tag, f"{out}-d"), env
                        ),
                    )
                    store_env = dict(env, DOCKYARD_ROOT=str(base / f"store-{run}-{tag}"))
                    record(
                        (f"pull {tag}", "cli"),
                        measure(
                            [
                                sys.executable,
                                "-m",
                                "dockyard",
                                "pull",
                                "-q",
                                f"{source.addr}/bench/{tag}:{tag}",
                            ],
                            store_env,
                        ),
                    )
                    for path in (f"{out}-s", f"{out}-d", base / f"store-{run}-{tag}"):
                        shutil.rmtree(path, ignore_errors=True)
        finally:
            source.stop()

        table = ratio_table(results, cases, args.runs)
        print(table)
        if args.out:
            skopeo_version = subprocess.run(
                ["skopeo", "--version"], capture_output=True, text=True
            ).stdout.strip()
            args.out.write_text(
                "## Client\n\n"
                f"`python bench/client.py --runs {args.runs}` — Dockyard's registry client beside "
                f"{skopeo_version}, same machine, same run, against `dockyard serve --auth none` "
                "(plain HTTP on 127.0.0.1; a fresh server for every push so nothing is "
                "deduplicated). Pushes read an OCI layout on disk; pulls write verified blobs into "
                "a directory (skopeo `dir:`). Wall time is the median of the runs, peak RSS the "
                "largest maximum resident set of any run (wait4). A time ratio above 1 means "
                "Dockyard is faster. The `dockyard pull` CLI row also unpacks every layer into "
                "the local store, which skopeo does not do.\n\n" + table + "\n"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_push":
        asyncio.run(_client_push(sys.argv[2], Path(sys.argv[3]), sys.argv[4], sys.argv[5]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_pull":
        asyncio.run(_client_pull(sys.argv[2], sys.argv[3], sys.argv[4], Path(sys.argv[5])))
    else:
        main()
