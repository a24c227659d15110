"""What only a real server on a real socket shows: cut-off bodies, limits, workers, the CLI."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import DockyardServer, DockyardServerFactory, assert_store_consistent


def _send_truncated(server: DockyardServer, request_line: str, claimed: int, sent: bytes) -> None:
    """Send a request whose body stops short of its Content-Length, then hang up."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        head = (
            f"{request_line} HTTP/1.1\r\nHost: {server.addr}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {claimed}\r\n\r\n"
        )
        sock.sendall(head.encode() + sent)
        time.sleep(0.3)
    time.sleep(0.3)


def test_cut_off_monolithic_upload_stores_nothing(registry: DockyardServer) -> None:
    data = os.urandom(200_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _send_truncated(
        registry, f"POST /v2/wire/cut/blobs/uploads/?digest={digest}", len(data), data[:50_000]
    )
    head = httpx.head(f"{registry.url}/v2/wire/cut/blobs/{digest}")
    assert head.status_code == 404
    assert_store_consistent(registry.data_dir)


def test_cut_off_chunk_keeps_what_arrived_so_the_client_can_resume(
    registry: DockyardServer,
) -> None:
    data = os.urandom(300_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    location = httpx.post(f"{registry.url}/v2/wire/resume/blobs/uploads/").headers["location"]
    _send_truncated(registry, f"PATCH {location}", len(data), data[:120_000])
    status = httpx.get(f"{registry.url}{location}")
    assert status.status_code == 204
    offset = int(status.headers["range"].split("-")[1]) + 1
    assert 0 < offset <= 120_000
    rest = httpx.patch(
        f"{registry.url}{location}",
        content=data[offset:],
        headers={"content-range": f"{offset}-{len(data) - 1}"},
    )
    assert rest.status_code == 202
    done = httpx.put(f"{registry.url}{location}?digest={digest}")
    assert done.status_code == 201
    got = httpx.get(f"{registry.url}/v2/wire/resume/blobs/{digest}")
    assert hashlib.sha256(got.content).hexdigest() == digest.split(":")[1]


def test_oversize_manifest_is_refused_before_it_is_read(registry: DockyardServer) -> None:
    with socket.create_connection(("127.0.0.1", registry.port)) as sock:
        head = (
            f"PUT /v2/wire/big/manifests/latest HTTP/1.1\r\nHost: {registry.addr}\r\n"
            "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
            f"Content-Length: {64 * 1024 * 1024}\r\n\r\n"
        )
        sock.sendall(head.encode())
        sock.settimeout(5)
        answer = ""
        while "SIZE_INVALID" not in answer:
            chunk = sock.recv(4096).decode()
            if not chunk:
                break
            answer += chunk
    assert answer.startswith("HTTP/1.1 413")
    assert "SIZE_INVALID" in answer


def test_workers_share_uploads_and_tags(dockyard_server: DockyardServerFactory) -> None:
    server = dockyard_server("--workers", "2")
    data = os.urandom(100_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    # Fresh connections land on either process; every step must see the others' writes.
    location = httpx.post(f"{server.url}/v2/w/blobs/uploads/").headers["location"]
    for start in range(0, len(data), 10_000):
        chunk = data[start : start + 10_000]
        response = httpx.patch(
            f"{server.url}{location}",
            content=chunk,
            headers={"content-range": f"{start}-{start + len(chunk) - 1}"},
        )
        assert response.status_code == 202, response.text
    assert httpx.put(f"{server.url}{location}?digest={digest}").status_code == 201
    config = b"{}"
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    httpx.post(f"{server.url}/v2/w/blobs/uploads/?digest={config_digest}", content=config)
    for tag_round in range(6):
        manifest = (
            '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
            f'"config":{{"mediaType":"application/json","digest":"{config_digest}","size":2}},'
            f'"layers":[{{"mediaType":"application/octet-stream","digest":"{digest}",'
            f'"size":{len(data)}}}],"annotations":{{"round":"{tag_round}"}}}}'
        ).encode()
        put = httpx.put(
            f"{server.url}/v2/w/manifests/latest",
            content=manifest,
            headers={"content-type": "application/vnd.oci.image.manifest.v1+json"},
        )
        expected = put.headers["docker-content-digest"]
        for _ in range(4):
            got = httpx.get(f"{server.url}/v2/w/manifests/latest")
            assert got.headers["docker-content-digest"] == expected


def test_serve_help_documents_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dockyard", "serve", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for option in ("--addr", "--data-dir", "--config", "--auth", "--htpasswd", "DOCKYARD_"):
        assert option in result.stdout


def test_config_file_and_environment(
    dockyard_server: DockyardServerFactory, tmp_path: Path
) -> None:
    config = tmp_path / "dockyard.toml"
    config.write_text('auth = "htpasswd"\nhtpasswd = "/nonexistent/htpasswd"\n')
    server = dockyard_server("--config", str(config), start=False)
    with pytest.raises(RuntimeError):
        server.start()
    assert "/nonexistent/htpasswd" in server.log_path.read_text()


def test_gc_command_reports_then_deletes(dockyard_server: DockyardServerFactory) -> None:
    server = dockyard_server()
    data = b"orphaned layer"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    httpx.post(f"{server.url}/v2/g/blobs/uploads/?digest={digest}", content=data)
    base = [sys.executable, "-m", "dockyard", "gc", "--data-dir", str(server.data_dir)]
    dry = subprocess.run([*base, "--grace", "0"], capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "would free 1 blobs (14 bytes)" in dry.stdout
    assert httpx.head(f"{server.url}/v2/g/blobs/{digest}").status_code == 200
    spared = subprocess.run([*base, "--delete"], capture_output=True, text=True)
    assert "freed 0 blobs" in spared.stdout
    real = subprocess.run([*base, "--delete", "--grace", "0"], capture_output=True, text=True)
    assert "freed 1 blobs (14 bytes)" in real.stdout
    assert httpx.get(f"{server.url}/v2/g/blobs/{digest}").status_code == 404
    assert_store_consistent(server.data_dir)
