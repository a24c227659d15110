#!/usr/bin/env python3
"""Dockyard against CNCF distribution (`docker-registry`), side by side, in one run.

    python bench/registry.py                                   # everything, ~5 minutes
    python bench/registry.py --dockyard-args "--server granian"
    python bench/registry.py --only manifest,blob --duration 5 --markdown /tmp/bench.md

Starts both registries on free loopback ports with fresh data dirs in one temporary
directory, loads the same images into both (built here as OCI layouts of random,
incompressible content), runs each measurement against one server at a time, and prints a
markdown table of both numbers, the ratio Dockyard/distribution and whether each target is
met. See bench/README.md for what is measured and the results of past runs.

Needs: wrk, skopeo, curl, /usr/bin/docker-registry (Debian's distribution 2.8), httpx;
py-spy for --profile. Sends traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "/usr/bin/docker-registry"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 1 << 20
KiB = 1 << 10

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# What docker/containerd send when pulling by tag.
ACCEPT = ", ".join(
    [
        MT_OCI_MANIFEST,
        MT_OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/json",
    ]
)

PHASES = ("manifest", "push", "blob", "pull", "layers", "4g")


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()  # fields from the 3rd (state) on


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Server:
    """One registry process (and whatever workers it forks), in its own process group."""

    def __init__(
        self,
        name: str,
        command: list[str],
        port: int,
        data_dir: Path,
        log: Path,
        cwd: Path = REPO_ROOT,
        env: dict[str, str] | None = None,
        ready_path: str = "/v2/",
    ):
        self.name = name
        self.command = command
        self.port = port
        self.data_dir = data_dir
        self.log_path = log
        self.cwd = cwd
        self.env = env
        self.ready_path = ready_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_rss = self.started_hwm = 0.0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.cwd,
                env=self.env,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + self.ready_path, timeout=2).status_code == 200:
                    time.sleep(0.5)
                    self.started_rss, self.started_hwm = self.rss_mib(), self.hwm_mib()
                    return
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.name} did not answer {self.ready_path} in 60 s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = self.proc.pid  # start_new_session: the group is ours alone
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(5)
        # workers that outlived their parent
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)

    def pids(self) -> list[int]:
        assert self.proc is not None
        return process_tree(self.proc.pid)

    def cpu_seconds(self) -> float:
        """utime+stime of every live process of the server, in seconds."""
        ticks = 0
        for pid in self.pids():
            fields = _stat_fields(pid)
            if fields is not None:
                ticks += int(fields[11]) + int(fields[12])
        return ticks / CLK_TCK

    def rss_mib(self) -> float:
        return sum(_status_kib(pid, "VmRSS") for pid in self.pids()) / 1024

    def hwm_mib(self) -> float:
        return sum(_status_kib(pid, "VmHWM") for pid in self.pids()) / 1024

    def hwm_max_process_mib(self) -> float:
        return max((_status_kib(pid, "VmHWM") for pid in self.pids()), default=0) / 1024


class RssSampler:
    """Peak of the server tree's summed VmRSS, sampled every 100 ms while in the block."""

    def __init__(self, server: Server, interval: float = 0.1) -> None:
        self.server = server
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss_mib())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.server.rss_mib())


# --------------------------------------------------------------------------- image content


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info.tobuf(format=tarfile.USTAR_FORMAT)


@dataclass
class LayoutImage:
    path: Path
    tag: str
    layers: list[tuple[str, int]]  # (digest, size) of each compressed layer
    manifest_digest: str = ""


class LayoutWriter:
    """A minimal OCI image layout: random files, each in its own tar, gzip-framed at level 0
    (valid gzip, incompressible, so skopeo sends the bytes as they are)."""

    def __init__(self, path: Path, seed: int) -> None:
        self.path = path
        self.rng = random.Random(seed)
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def _put(self, data: bytes) -> tuple[str, int]:
        hexdigest = hashlib.sha256(data).hexdigest()
        (self.path / "blobs" / "sha256" / hexdigest).write_bytes(data)
        return "sha256:" + hexdigest, len(data)

    def layer(self, size: int) -> tuple[str, int, str]:
        """A layer holding one random file of `size` bytes: (digest, blob size, diff id)."""
        tmp = self.path / "blobs" / "layer.tmp"
        packer = zlib.compressobj(0, zlib.DEFLATED, 31)
        compressed, raw = hashlib.sha256(), hashlib.sha256()
        written = 0
        with open(tmp, "wb") as out:

            def emit(data: bytes) -> None:
                nonlocal written
                raw.update(data)
                packed = packer.compress(data)
                compressed.update(packed)
                out.write(packed)
                written += len(packed)

            emit(_tar_header("data.bin", size))
            remaining = size
            while remaining:
                block = self.rng.randbytes(min(4 * MiB, remaining))
                emit(block)
                remaining -= len(block)
            emit(b"\0" * ((-size) % 512 + 1024))
            tail = packer.flush()
            compressed.update(tail)
            out.write(tail)
            written += len(tail)
        hexdigest = compressed.hexdigest()
        tmp.rename(self.path / "blobs" / "sha256" / hexdigest)
        return "sha256:" + hexdigest, written, "sha256:" + raw.hexdigest()

    def image(self, layer_sizes: list[int], tag: str = "latest") -> LayoutImage:
        layers = [self.layer(size) for size in layer_sizes]
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff for _, _, diff in layers]},
        }
        config_digest, config_size = self._put(json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": [
                {"mediaType": MT_OCI_LAYER, "digest": digest, "size": size}
                for digest, size, _ in layers
            ],
        }
        manifest_digest, manifest_size = self._put(json.dumps(manifest, indent=3).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": MT_OCI_MANIFEST,
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "annotations": {"org.opencontainers.image.ref.name": tag},
                }
            ],
        }
        (self.path / "index.json").write_text(json.dumps(index))
        return LayoutImage(self.path, tag, [(d, s) for d, s, _ in layers], manifest_digest)


# --------------------------------------------------------------------------- clients


def skopeo_copy(source: str, dest: str, options: tuple[str, ...] = ()) -> float:
    """Wall seconds of one `skopeo copy` between a local layout and a loopback registry."""
    command = [
        "skopeo",
        "--insecure-policy",
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        *options,
        source,
        dest,
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{done.stderr[-3000:]}")
    return elapsed


def warm(path: Path) -> None:
    """Read a layout into the page cache, so a timed push doesn't wait on the disk (this VM
    pages out cold page cache after about a minute)."""
    for file in path.rglob("*"):
        if file.is_file():
            with open(file, "rb", buffering=0) as handle:
                while handle.read(8 * MiB):
                    pass


def push(server: Server, image: LayoutImage, repo: str) -> float:
    warm(image.path)
    return skopeo_copy(f"oci:{image.path}:{image.tag}", f"docker://{server.host}/{repo}:latest")


@dataclass
class LoadResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: str
    cpu_seconds: float  # server CPU consumed during the run

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds / max(self.requests, 1) * 1e6

    @property
    def cores(self) -> float:
        return self.cpu_seconds / self.seconds


def _latency_ms(text: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\b", text, re.M)
    if not match:
        return float("nan")
    return float(match[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[match[2]]


def wrk(
    server: Server,
    url: str,
    method: str,
    duration: float,
    connections: int,
    scripts: Path,
    headers: tuple[str, ...] = (f"Accept: {ACCEPT}",),
    body: str = "",
) -> LoadResult:
    """`wrk -t2` sending `method` (and `body`) to `url` with `headers`, for `duration` s."""
    script = scripts / f"wrk-{method.lower()}-{len(body)}.lua"
    script.write_text(f"wrk.method = {json.dumps(method)}\nwrk.body = {json.dumps(body)}\n")
    command = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--latency",
        "-s",
        str(script),
        *[arg for header in headers for arg in ("-H", header)],
        url,
    ]
    cpu_before = server.cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    cpu = server.cpu_seconds() - cpu_before
    text = done.stdout
    match = re.search(r"(\d+) requests in ([\d.]+)(m?s)", text)
    if not match:
        raise RuntimeError(f"unexpected wrk output:\n{text}\n{done.stderr}")
    seconds = float(match[2]) / (1000 if match[3] == "ms" else 1)
    errors = []
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        errors.append(f"{non2xx[1]} non-2xx")
    sockerr = re.search(r"Socket errors: (.*)", text)
    if sockerr:
        errors.append(f"socket errors: {sockerr[1]}")
    return LoadResult(
        requests=int(match[1]),
        seconds=seconds,
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1]),  # type: ignore[index]
        p50_ms=_latency_ms(text, "50"),
        p99_ms=_latency_ms(text, "99"),
        errors="; ".join(errors),
        cpu_seconds=cpu,
    )


def _load_worker(
    port: int,
    request: bytes,
    head: bool,
    connections: int,
    duration: float,
    start: object,
    results: object,
) -> None:
    """One process of `http_load`: `connections` keep-alive sockets, one request in flight
    on each, a response complete at the end of its headers (HEAD) or of its body (GET)."""
    import selectors
    from array import array

    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytes] = {}
    sent_at: dict[socket.socket, float] = {}
    latencies = array("d")
    count = non2xx = errors = 0

    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        buffers[sock] = b""
        return sock

    def send(sock: socket.socket) -> None:
        sent_at[sock] = time.perf_counter()
        sock.sendall(request)  # small; the socket buffer always has room

    socks = [connect() for _ in range(connections)]
    start.wait()  # type: ignore[attr-defined]
    began = time.perf_counter()
    end = began + duration
    for sock in socks:
        send(sock)
    live = len(socks)
    while live:
        for key, _ in selector.select(1.0):
            sock = key.fileobj
            try:
                data = sock.recv(262144)  # type: ignore[union-attr]
            except ConnectionError:
                data = b""
            if not data:  # the server closed the connection: count it, open another
                errors += 1
                selector.unregister(sock)
                sock.close()  # type: ignore[union-attr]
                if time.perf_counter() < end:
                    send(connect())
                else:
                    live -= 1
                continue
            buffer = buffers[sock] + data  # type: ignore[index]
            split = buffer.find(b"\r\n\r\n")
            if split < 0:
                buffers[sock] = buffer  # type: ignore[index]
                continue
            if not head:
                headers = buffer[:split].lower()
                at = headers.find(b"\r\ncontent-length:")
                length = int(headers[at + 17 : headers.find(b"\r\n", at + 2)]) if at >= 0 else 0
                if len(buffer) < split + 4 + length:
                    buffers[sock] = buffer  # type: ignore[index]
                    continue
            buffers[sock] = b""  # type: ignore[index]
            now = time.perf_counter()
            count += 1
            latencies.append(now - sent_at[sock])  # type: ignore[index]
            if buffer[9:10] != b"2":
                non2xx += 1
            if now < end:
                send(sock)  # type: ignore[arg-type]
            else:
                selector.unregister(sock)
                sock.close()  # type: ignore[union-attr]
                live -= 1
    results.put((count, non2xx, errors, time.perf_counter() - began, latencies.tobytes()))  # type: ignore[attr-defined]


def http_load(
    server: Server, path: str, method: str, duration: float, connections: int, processes: int = 2
) -> LoadResult:
    """wrk's measurement for methods wrk can't do: wrk 4.1 waits for a body after a HEAD
    response with a Content-Length and hangs. `processes` processes, `connections` in all."""
    import multiprocessing
    from array import array

    request = (
        f"{method} {path} HTTP/1.1\r\nHost: {server.host}\r\nUser-Agent: bench\r\n"
        f"Accept: {ACCEPT}\r\n\r\n"
    ).encode()
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    shares = [connections // processes + (i < connections % processes) for i in range(processes)]
    workers = [
        context.Process(
            target=_load_worker,
            args=(server.port, request, method == "HEAD", share, duration, start, results),
        )
        for share in shares
    ]
    for worker in workers:
        worker.start()
    time.sleep(1.0)  # let them import and connect
    cpu_before = server.cpu_seconds()
    start.set()
    parts = [results.get(timeout=duration + 60) for _ in workers]
    cpu = server.cpu_seconds() - cpu_before
    for worker in workers:
        worker.join(10)
    latencies = array("d")
    for part in parts:
        latencies.frombytes(part[4])
    ordered = sorted(latencies)

    def percentile(p: float) -> float:
        return ordered[min(int(len(ordered) * p / 100), len(ordered) - 1)] * 1e3 if ordered else 0

    count = sum(part[0] for part in parts)
    seconds = max(part[3] for part in parts)
    errors = []
    if sum(part[1] for part in parts):
        errors.append(f"{sum(part[1] for part in parts)} non-2xx")
    if sum(part[2] for part in parts):
        errors.append(f"{sum(part[2] for part in parts)} connections closed by the server")
    return LoadResult(
        requests=count,
        seconds=seconds,
        rps=count / seconds,
        p50_ms=percentile(50),
        p99_ms=percentile(99),
        errors="; ".join(errors),
        cpu_seconds=cpu,
    )


def curl_get_mbps(url: str) -> tuple[float, int]:
    """(MB/s, bytes) of one GET written to /dev/null."""
    done = subprocess.run(
        ["curl", "-sS", "-f", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url],
        capture_output=True,
        text=True,
        check=True,
    )
    size, seconds = done.stdout.split()
    return int(size) / float(seconds) / 1e6, int(size)


def summarize_profile(raw: Path, top: int = 12) -> str:
    """The hottest leaf frames (where the time is spent, native calls included in the Python
    frame that made them) and the dockyard/ frames with the most time under them."""
    leaf: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    with contextlib.suppress(OSError):
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            samples = int(count)
            total += samples
            frames = [_frame_name(frame) for frame in stack.split(";")]
            leaf[frames[-1]] = leaf.get(frames[-1], 0) + samples
            for frame in set(frames):
                if "dockyard/" in frame:
                    inclusive[frame] = inclusive.get(frame, 0) + samples
    if not total:
        return "  (no samples)"

    def lines(counts: dict[str, int]) -> list[str]:
        ranked = sorted(counts.items(), key=lambda item: -item[1])[:top]
        return [f"    {100 * n / total:5.1f}%  {frame}" for frame, n in ranked]

    return "\n".join(
        [
            f"  {total} samples; self time (leaf frames):",
            *lines(leaf),
            "  time under dockyard/ frames (inclusive):",
            *lines(inclusive),
        ]
    )


def py_spy(pid: int, out: Path, name: str, action: Callable[[], object]) -> str:
    """Run `action` with py-spy sampling `pid` and its children: NAME.svg (flame graph),
    NAME.txt (collapsed stacks); returns a markdown summary of the hottest frames."""
    if not shutil.which("py-spy"):
        return "py-spy is not installed (pip install py-spy): no profile"
    out.mkdir(parents=True, exist_ok=True)
    spies = [
        subprocess.Popen(
            [
                *("py-spy", "record", "--subprocesses", "--nonblocking", "-r", "200"),
                *("-f", fmt, "-o", str(out / f"{name}.{suffix}"), "--pid", str(pid)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fmt, suffix in (("flamegraph", "svg"), ("raw", "txt"))
    ]
    time.sleep(1.0)
    try:
        action()
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            try:
                spy.wait(60)
            except subprocess.TimeoutExpired:
                spy.kill()
    summary = summarize_profile(out / f"{name}.txt")
    return f"py-spy, Dockyard during {name} ({out}/{name}.svg):\n\n```\n{summary}\n```"


def _frame_name(frame: str) -> str:
    """`get_manifest (dockyard/registry/manifests.py:61)` from py-spy's long form."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0]
    for marker in ("site-packages/", "/lib/python3.", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            path = path.split("/", 1)[1] if marker == "/lib/python3." else path
    if "/dockyard/" in path:
        path = "dockyard/" + path.split("/dockyard/", 1)[1]
    return f"{name} ({path})" if path else name


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    metric: str
    dockyard: float | None = None
    distribution: float | None = None
    fmt: str = "{:,.0f}"
    target: str = ""
    # given (dockyard, distribution, ratio) → met?
    check: Callable[[float, float | None, float | None], bool] | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.dockyard is None or not self.distribution:
            return None
        return self.dockyard / self.distribution

    def met(self) -> str:
        if self.check is None or self.dockyard is None:
            return ""
        return "yes" if self.check(self.dockyard, self.distribution, self.ratio) else "**no**"

    def cells(self) -> list[str]:
        def show(value: float | None) -> str:
            return "-" if value is None else self.fmt.format(value)

        ratio = "-" if self.ratio is None else f"{self.ratio:.2f}"
        return [
            self.metric,
            show(self.dockyard),
            show(self.distribution),
            ratio,
            self.target,
            self.met(),
        ]


def ratio_at_least(limit: float) -> Callable[[float, float | None, float | None], bool]:
    return lambda _d, _r, ratio: ratio is not None and ratio >= limit


def ratio_at_most(limit: float) -> Callable[[float, float | None, float | None], bool]:
    return lambda _d, _r, ratio: ratio is not None and ratio <= limit + 1e-9


def markdown_table(rows: list[Row], columns: tuple[str, str] = ("Dockyard", "distribution")) -> str:
    """`columns`: what the two numbers of each row are."""
    head = ["metric", *columns, f"{columns[0]}/{columns[1]}", "target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * 3 + ["---"] * 2)]
    lines[-1] += "|"
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the benchmark


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    dockyard: Server
    distribution: Server
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    layouts: dict[str, list[LayoutImage]] = field(default_factory=dict)

    @property
    def servers(self) -> tuple[Server, Server]:
        return self.dockyard, self.distribution

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def wants(self, phase: str) -> bool:
        return phase in self.args.only

    # -- content

    def build_layouts(self) -> None:
        seed = int.from_bytes(os.urandom(4))  # fresh content: skopeo's blob cache can't help
        started = time.perf_counter()
        layouts = self.work / "layouts"
        self.layouts["small"] = [
            LayoutWriter(layouts / "small", seed).image([2 * KiB, 24 * KiB, 3 * KiB])
        ]
        big_count = self.args.reps if self.wants("push") else 1
        if {"push", "blob", "pull"} & set(self.args.only):
            self.layouts["big"] = [
                LayoutWriter(layouts / f"big{i}", seed + 100 + i).image([self.args.big_mib * MiB])
                for i in range(big_count)
            ]
        if self.wants("layers"):
            self.layouts["layers"] = [
                LayoutWriter(layouts / f"layers{i}", seed + 200 + i).image(
                    [self.args.layer_kib * KiB] * self.args.layer_count
                )
                for i in range(self.args.reps)
            ]
        self.log(f"built OCI layouts in {time.perf_counter() - started:.1f}s")

    # -- 1. manifests

    def bench_manifests(self) -> None:
        image = self.layouts["small"][0]
        results: dict[tuple[str, str], LoadResult] = {}
        for server in self.servers:
            push(server, image, "bench/small")
            url = f"{server.base}/v2/bench/small/manifests/latest"
            response = httpx.get(url, headers={"accept": ACCEPT})
            if response.status_code != 200 or "docker-content-digest" not in response.headers:
                raise RuntimeError(f"{server.name}: GET {url} → {response.status_code}")
            if response.headers["docker-content-digest"] != image.manifest_digest:
                raise RuntimeError(f"{server.name}: manifest digest differs")
            path = "/v2/bench/small/manifests/latest"
            duration, connections = self.args.duration, self.args.connections
            wrk(server, url, "GET", 2, connections, self.work)  # warm up
            self.log(f"{server.name}: manifest GET (wrk) for {duration:g}s")
            results[server.name, "GET"] = wrk(server, url, "GET", duration, connections, self.work)
            for method in ("HEAD", "GET"):
                self.log(f"{server.name}: manifest {method} (python loader) for {duration:g}s")
                results[server.name, f"{method}*"] = http_load(
                    server, path, method, duration, connections
                )
            for key, result in results.items():
                if key[0] == server.name and result.errors:
                    self.notes.append(f"{server.name} manifest {key[1]}: {result.errors}")
        c = self.args.connections
        labels = {
            "GET": f"manifest GET by tag (wrk -t2 -c{c})",
            "HEAD*": f"manifest HEAD by tag (python loader, 2 procs, c{c})",
            "GET*": f"manifest GET by tag (python loader, 2 procs, c{c})",
        }
        for key, label in labels.items():
            d, r = results["dockyard", key], results["distribution", key]
            target = "≥ 5" if key in ("GET", "HEAD*") else ""
            check = ratio_at_least(5) if target else None
            self.add(Row(f"{label}, req/s", d.rps, r.rps, target=target, check=check))
            self.add(Row("  … p99 latency, ms", d.p99_ms, r.p99_ms, "{:.2f}"))
            self.add(
                Row(
                    "  … server CPU per request, µs",
                    d.cpu_us_per_request,
                    r.cpu_us_per_request,
                    "{:.1f}",
                )
            )
            self.add(Row("  … server CPU, cores busy", d.cores, r.cores, "{:.2f}"))
        if self.args.profile:
            self.profile_manifests()

    def profiled(self, name: str, action: Callable[[], object]) -> None:
        """Run `action` (unmeasured) with py-spy sampling Dockyard; the summary goes in the
        report."""
        assert self.dockyard.proc is not None
        self.log(f"dockyard: {name} under py-spy → {self.args.profile}")
        self.profiles.append(py_spy(self.dockyard.proc.pid, Path(self.args.profile), name, action))

    def profile_manifests(self) -> None:
        url = f"{self.dockyard.base}/v2/bench/small/manifests/latest"
        self.profiled(
            "manifest-get",
            lambda: wrk(
                self.dockyard, url, "GET", self.args.duration, self.args.connections, self.work
            ),
        )

    # -- 2./3. the 256 MiB image

    def ensure_big(self, server: Server) -> str:
        """bench/big0 in the server, pushed once; the repo name."""
        if not getattr(server, "_big_pushed", False):
            push(server, self.layouts["big"][0], "bench/big0")
            server._big_pushed = True  # type: ignore[attr-defined]
        return "bench/big0"

    def bench_push(self) -> None:
        times: dict[str, list[float]] = {}
        for server in self.servers:
            times[server.name] = []
            for i, image in enumerate(self.layouts["big"]):
                self.log(f"{server.name}: skopeo push {self.args.big_mib} MiB #{i + 1}")
                times[server.name].append(push(server, image, f"bench/big{i}"))
            server._big_pushed = True  # type: ignore[attr-defined]
        self.add_times(
            f"skopeo push {self.args.big_mib} MiB 1-layer image", times, 1, "≤ 1 (time)"
        )

    def bench_blob(self) -> None:
        digest, size = self.layouts["big"][0].layers[0]
        speeds: dict[str, list[float]] = {}
        for server in self.servers:
            repo = self.ensure_big(server)
            url = f"{server.base}/v2/{repo}/blobs/{digest}"
            curl_get_mbps(url)  # warm the page cache
            speeds[server.name] = []
            self.log(f"{server.name}: {self.args.blob_reps} x GET {size / MiB:.0f} MiB blob")
            for _ in range(self.args.blob_reps):
                mbps, got = curl_get_mbps(url)
                if got != size:
                    raise RuntimeError(f"{server.name}: blob GET returned {got} of {size} bytes")
                speeds[server.name].append(mbps)
        self.add(
            Row(
                f"blob GET {size / MiB:.0f} MiB, MB/s (curl, median of {self.args.blob_reps})",
                statistics.median(speeds["dockyard"]),
                statistics.median(speeds["distribution"]),
                target="≥ 1",
                check=ratio_at_least(1),
            )
        )

    def add_times(
        self, label: str, times: dict[str, list[float]], most: float, target: str
    ) -> None:
        """Median wall times; met when Dockyard's is at most `most` times distribution's."""
        self.add(
            Row(
                f"{label}, s (median of {self.args.reps})",
                statistics.median(times["dockyard"]),
                statistics.median(times["distribution"]),
                "{:.2f}",
                target=target,
                check=ratio_at_most(most),
            )
        )

    def alternating(self, rep: int) -> list[Server]:
        """The servers in turn, the other one first every second rep: neither always runs
        right after the other's writes are still being flushed."""
        return self.servers if rep % 2 == 0 else list(reversed(self.servers))

    def bench_pull(self) -> None:
        times: dict[str, list[float]] = {server.name: [] for server in self.servers}
        repos = {server.name: self.ensure_big(server) for server in self.servers}
        for i in range(self.args.reps):
            for server in self.alternating(i):
                repo = repos[server.name]
                dest = self.work / "pulled"
                shutil.rmtree(dest, ignore_errors=True)
                self.log(f"{server.name}: skopeo pull {self.args.big_mib} MiB #{i + 1}")
                times[server.name].append(
                    skopeo_copy(f"docker://{server.host}/{repo}:latest", f"oci:{dest}:latest")
                )
                shutil.rmtree(dest, ignore_errors=True)
        self.add_times(
            f"skopeo pull {self.args.big_mib} MiB 1-layer image", times, 1, "≤ 1 (time)"
        )

    # -- 4. many layers

    def bench_layers(self) -> None:
        times: dict[str, list[float]] = {server.name: [] for server in self.servers}
        count, kib = self.args.layer_count, self.args.layer_kib
        for i, image in enumerate(self.layouts["layers"]):
            for server in self.alternating(i):
                self.log(f"{server.name}: skopeo push {count} x {kib} KiB layers #{i + 1}")
                times[server.name].append(push(server, image, f"bench/layers{i}"))
        self.add_times(
            f"skopeo push {count} x {kib} KiB layers", times, 1 / 1.5, "≤ 0.67 (1.5x faster)"
        )
        if self.args.profile:
            seed = int.from_bytes(os.urandom(4))
            image = LayoutWriter(self.work / "layouts" / "layers-profile", seed).image(
                [self.args.layer_kib * KiB] * self.args.layer_count
            )
            self.profiled("layers-push", lambda: push(self.dockyard, image, "bench/profiled"))

    # -- 5. memory

    def report_memory(self, peaks: dict[str, float]) -> None:
        d, r = self.dockyard, self.distribution
        self.add(Row("server RSS once started, MiB", d.started_rss, r.started_rss))
        self.add(Row("server VmHWM once started, MiB", d.started_hwm, r.started_hwm))
        self.add(
            Row(
                "server peak RSS, MiB (VmHWM summed over the process tree)",
                d.hwm_mib(),
                r.hwm_mib(),
                target="Dockyard ≤ 150 MiB",
                check=lambda dockyard, _r, _ratio: dockyard <= 150,
            )
        )
        self.add(
            Row(
                "server peak RSS, MiB (summed VmRSS sampled every 100 ms)",
                peaks.get(d.name),
                peaks.get(r.name),
            )
        )
        self.add(
            Row(
                "server processes (largest one's VmHWM, MiB)",
                d.hwm_max_process_mib(),
                r.hwm_max_process_mib(),
                note=f"{len(d.pids())} vs {len(r.pids())} processes",
            )
        )
        self.notes.append(
            f"process tree: Dockyard {len(d.pids())} process(es), "
            f"distribution {len(r.pids())} process(es)"
        )

    # -- 6. 4 GiB upload

    def upload_huge(self, server: Server) -> tuple[float, float, float, float]:
        """(MB/s, RSS before, RSS after, peak RSS during) of a chunked 4 GiB upload."""
        total, chunk = self.args.huge_gib << 30, self.args.chunk_mib * MiB
        block = os.urandom(MiB)
        hasher = hashlib.sha256()
        repo = "bench/huge"
        with httpx.Client(base_url=server.base, timeout=600) as client:
            started = client.post(f"/v2/{repo}/blobs/uploads/")
            if started.status_code != 202:
                raise RuntimeError(f"{server.name}: upload POST → {started.status_code}")
            location = httpx.URL(server.base).join(started.headers["location"])
            rss_before = server.rss_mib()
            offset = 0
            begun = time.perf_counter()
            with RssSampler(server) as sampler:
                while offset < total:
                    size = min(chunk, total - offset)

                    def body(size: int = size) -> Iterator[bytes]:
                        sent = 0
                        while sent < size:
                            piece = block if size - sent >= len(block) else block[: size - sent]
                            hasher.update(piece)
                            sent += len(piece)
                            yield piece

                    answer = client.patch(
                        location,
                        content=body(),
                        headers={
                            "content-type": "application/octet-stream",
                            "content-length": str(size),
                            "content-range": f"{offset}-{offset + size - 1}",
                        },
                    )
                    if answer.status_code != 202:
                        raise RuntimeError(
                            f"{server.name}: PATCH at {offset} → {answer.status_code} "
                            f"{answer.text[:300]}"
                        )
                    location = httpx.URL(server.base).join(answer.headers["location"])
                    offset += size
                digest = "sha256:" + hasher.hexdigest()
                done = client.put(location.copy_merge_params({"digest": digest}))
                if done.status_code != 201:
                    raise RuntimeError(f"{server.name}: final PUT → {done.status_code} {done.text}")
            elapsed = time.perf_counter() - begun
            rss_after = server.rss_mib()
            head = client.head(f"/v2/{repo}/blobs/{digest}")
            if head.status_code != 200 or int(head.headers["content-length"]) != total:
                raise RuntimeError(f"{server.name}: uploaded blob HEAD → {head.status_code}")
            client.delete(f"/v2/{repo}/blobs/{digest}")
        # free the disk now: the blob file itself (neither server deletes it on unlink)
        for path in server.data_dir.rglob(digest.split(":")[1]):
            with contextlib.suppress(OSError):
                path.unlink()
        return total / elapsed / 1e6, rss_before, rss_after, sampler.peak

    def bench_huge(self) -> None:
        gib, chunk = self.args.huge_gib, self.args.chunk_mib
        results: dict[str, tuple[float, float, float, float]] = {}
        servers = self.servers if self.args.huge_both else (self.dockyard,)
        for server in servers:
            self.log(f"{server.name}: {gib} GiB upload in {chunk} MiB PATCH chunks")
            results[server.name] = self.upload_huge(server)
        d = results["dockyard"]
        r = results.get("distribution")

        def pick(index: int) -> tuple[float, float | None]:
            return d[index], None if r is None else r[index]

        label = f"{gib} GiB chunked upload ({chunk} MiB PATCHes)"
        self.add(Row(f"{label}, MB/s", *pick(0)))
        self.add(Row(f"{label}: server RSS before, MiB", *pick(1)))
        self.add(Row(f"{label}: server RSS after, MiB", *pick(2)))
        self.add(
            Row(
                f"{label}: server peak RSS during, MiB",
                *pick(3),
                target=f"flat: Dockyard peak - before < {chunk} MiB",
                check=lambda _d, _r, _ratio: d[3] - d[1] < chunk,
            )
        )

    # -- all

    def run(self) -> None:
        self.build_layouts()
        for server in self.servers:
            self.log(f"starting {server.name} on {server.host}")
            server.start()
        peaks: dict[str, float] = {}
        samplers = {server.name: RssSampler(server) for server in self.servers}
        for sampler in samplers.values():
            sampler.__enter__()
        try:
            if self.wants("manifest"):
                self.bench_manifests()
            if self.wants("push"):
                self.bench_push()
            if self.wants("blob"):
                self.bench_blob()
            if self.wants("pull"):
                self.bench_pull()
            if self.wants("layers"):
                self.bench_layers()
        finally:
            for name, sampler in samplers.items():
                sampler.__exit__()
                peaks[name] = sampler.peak
        self.report_memory(peaks)
        if self.wants("4g"):
            self.bench_huge()


def describe_machine(args: argparse.Namespace, dockyard_command: list[str]) -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = _meminfo_gib()
    source = args.dockyard_src
    rev = _git(source, "rev-parse", "--short", "HEAD") or "?"
    if _git(source, "status", "--porcelain", "--", "dockyard"):
        rev += " + uncommitted changes"
    versions = {
        "distribution": _first_line([DISTRIBUTION, "--version"]),
        "skopeo": _first_line(["skopeo", "--version"]),
        "wrk": _first_line(["wrk", "--version"]),
    }
    server_args = shlex.join(dockyard_command[dockyard_command.index("serve") :])
    return "\n".join(
        [
            f"- date: {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
            f"- machine: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
            f"- Dockyard: `dockyard {server_args}` (git {rev})",
            f"- {versions['distribution']}; {versions['skopeo']}; {versions['wrk']}",
            f"- wrk: -t2 -c{args.connections} -d{args.duration:g}s, Accept: OCI + docker types",
        ]
    )


def machine_load() -> str:
    """1-minute load average and CPU pressure: other work on the machine skews the numbers."""
    load = Path("/proc/loadavg").read_text().split()[0]
    with contextlib.suppress(OSError, IndexError):
        pressure = Path("/proc/pressure/cpu").read_text().split()[1].split("=")[1]
        return f"load {load}, cpu pressure {pressure}%"
    return f"load {load}"


def wait_idle(limit: float, timeout: float) -> None:
    """Wait (up to `timeout` s) for the 1-minute load average to fall under `limit`."""
    deadline = time.monotonic() + timeout
    while float(Path("/proc/loadavg").read_text().split()[0]) >= limit:
        if time.monotonic() > deadline:
            print(f"machine still busy ({machine_load()}); going on", file=sys.stderr)
            return
        time.sleep(5)


def _git(source: Path, *command: str) -> str:
    if not (source / ".git").exists():
        return ""
    done = subprocess.run(["git", "-C", str(source), *command], capture_output=True, text=True)
    return done.stdout.strip()


def _meminfo_gib() -> float:
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int(Path("/proc/meminfo").read_text().split()[1]) / (1 << 20)
    return 0.0


def _first_line(command: list[str]) -> str:
    with contextlib.suppress(OSError):
        done = subprocess.run(command, capture_output=True, text=True)
        return (done.stdout or done.stderr).strip().splitlines()[0]
    return f"{command[0]}: not found"


def distribution_config(path: Path, data_dir: Path, port: int) -> Path:
    # Like Debian's /etc/docker/registry/config.yml (in-memory blob descriptor cache,
    # deletes on), minus auth and with the access log off, as Dockyard's is.
    path.write_text(
        "\n".join(
            [
                "version: 0.1",
                "log:",
                "  level: error",
                "  accesslog:",
                "    disabled: true",
                "storage:",
                "  cache:",
                "    blobdescriptor: inmemory",
                "  filesystem:",
                f"    rootdirectory: {data_dir}",
                "  delete:",
                "    enabled: true",
                "http:",
                f"  addr: 127.0.0.1:{port}",
                "",
            ]
        )
    )
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dockyard-args",
        default="",
        help='extra arguments for `dockyard serve`, e.g. "--workers 2" or "--server granian"',
    )
    parser.add_argument(
        "--dockyard-src",
        type=Path,
        default=REPO_ROOT,
        help="run the Dockyard server from this source tree (e.g. a `git archive` of a commit)",
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds of each wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument(
        "--only",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (memory is always reported)",
    )
    parser.add_argument("--skip-4g", action="store_true", help="skip the 4 GiB upload")
    parser.add_argument(
        "--huge-both",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the 4 GiB upload against distribution too",
    )
    parser.add_argument("--reps", type=int, default=3, help="runs of each skopeo push/pull")
    parser.add_argument("--blob-reps", type=int, default=5, help="GETs of the big blob")
    parser.add_argument("--big-mib", type=int, default=256, help="size of the big layer")
    parser.add_argument("--layer-count", type=int, default=100)
    parser.add_argument("--layer-kib", type=int, default=256)
    parser.add_argument("--huge-gib", type=int, default=4)
    parser.add_argument("--chunk-mib", type=int, default=64)
    parser.add_argument("--markdown", type=Path, help="also write the results to this file")
    parser.add_argument("--profile", help="py-spy Dockyard under manifest GET load into this dir")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to this long for the load average to fall under --idle-load",
    )
    parser.add_argument("--idle-load", type=float, default=0.5)
    parser.add_argument("--tmpdir", type=Path, help="where the temporary directory goes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    args.dockyard_src = args.dockyard_src.resolve()
    args.only = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(args.only) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s) {sorted(unknown)}; choose from {','.join(PHASES)}")
    if args.skip_4g and "4g" in args.only:
        args.only.remove("4g")
    return args


def finish_report(
    report: list[str],
    notes: list[str],
    profiles: list[str],
    started: float,
    load_before: str,
    markdown: Path | None,
    failed: BaseException | None,
) -> int:
    """Notes, profiles and the run's time and load after the table; print, write, exit code."""
    if notes:
        report += ["", *[f"- {note}" for note in notes]]
    for profile in profiles:
        report += ["", profile]
    report.append(
        f"\n_total run time {time.perf_counter() - started:.0f} s; machine before the run: "
        f"{load_before}, after: {machine_load()}_"
    )
    text = "\n".join(report) + "\n"
    print(text)
    if markdown:
        markdown.write_text(text)
    if failed is not None:
        print(f"benchmark failed: {failed!r}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("wrk", "skopeo", "curl", DISTRIBUTION):
        if not shutil.which(tool):
            sys.exit(f"missing {tool} (see scripts/install-test-deps.sh)")
    if args.tmpdir:
        args.tmpdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-", dir=args.tmpdir))
    dock_port, dist_port = free_port(), free_port()
    while dist_port == dock_port:
        dist_port = free_port()
    dockyard_command = [
        sys.executable,
        "-m",
        "dockyard",
        "serve",
        "--addr",
        f"127.0.0.1:{dock_port}",
        "--data-dir",
        str(work / "dockyard"),
        "--log-level",
        "warning",
        "--no-access-log",
        "--auth",
        "none",
        *shlex.split(args.dockyard_args),
    ]
    env = dict(os.environ)
    if args.dockyard_src != REPO_ROOT:
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(args.dockyard_src), env.get("PYTHONPATH")])
        )
    dist_config = distribution_config(work / "distribution.yml", work / "distribution", dist_port)
    bench = Bench(
        args,
        work,
        Server(
            "dockyard",
            dockyard_command,
            dock_port,
            work / "dockyard",
            work / "dockyard.log",
            cwd=args.dockyard_src,
            env=env,
        ),
        Server(
            "distribution",
            [DISTRIBUTION, "serve", str(dist_config)],
            dist_port,
            work / "distribution",
            work / "distribution.log",
        ),
    )
    if args.wait_idle:
        wait_idle(args.idle_load, args.wait_idle)
    header = describe_machine(args, dockyard_command)
    load_before = machine_load()
    started = time.perf_counter()
    failed = None
    try:
        bench.run()
    except (RuntimeError, subprocess.CalledProcessError, httpx.HTTPError) as exc:
        failed = exc
        for server in bench.servers:
            bench.log(f"{server.name} log tail:\n{server.log_tail()}")
    except KeyboardInterrupt:
        failed = KeyboardInterrupt()
    finally:
        for server in bench.servers:
            server.stop()
        if args.keep:
            bench.log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report = [
        f"### `dockyard serve {args.dockyard_args}`".rstrip() + "\n",
        header,
        "",
        markdown_table(bench.rows),
    ]
    return finish_report(
        report, bench.notes, bench.profiles, started, load_before, args.markdown, failed
    )


if __name__ == "__main__":
    sys.exit(main())
