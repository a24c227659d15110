"""Fixtures for the registry client's tests: real registries, a token server, a faulty proxy.

- `distribution(htpasswd=…, token=…, hub=…)`: Debian's docker-registry (CNCF distribution 2.8)
  on 127.0.0.1 with a filesystem store, deletes enabled, and htpasswd (Basic) or token auth
  (from a `TokenServer`, or from a Dockyard hub: its /token realm and its signing certificate).
- `hub(users)`: `dockyard serve --auth hub` with accounts made by `dockyard user create`.
- `TokenServer`: a Docker-token-spec server (GET with Basic, OAuth2 POST with password and
  refresh_token grants) issuing RS256 JWTs with an x5c chain, which distribution verifies; it
  records every request, so tests can check which grants the client used and how often.
- `FaultProxy`: an HTTP proxy in front of a real server that corrupts, truncates or fails
  chosen requests (the bad peers of the tests).
- `dockyard_cli(*args, env=…, input=…)`: runs `python -m dockyard …` as a subprocess.
- `DirSource` and `write_image()`: an image from tests/imagegen.py as files a push can read.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from clients.conftest import docker, dockerd  # noqa: F401 (fixtures of the interop tests)
from conftest import REPO_ROOT, DockyardServer, free_port, write_htpasswd
from imagegen import Image, Index

DOCKER_REGISTRY = "/usr/bin/docker-registry"


# -- images as files ------------------------------------------------------------------------


class DirSource:
    """A `ContentSource` over a directory of blobs named by hex digest."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.manifests: dict[str, tuple[bytes, str]] = {}
        self.mounts: dict[str, list[str]] = {}
        directory.mkdir(parents=True, exist_ok=True)

    def add_image(self, image: Image) -> None:
        for blob in image.blobs:
            path = self.directory / blob.digest.split(":")[1]
            if not path.exists():
                path.write_bytes(blob.data)
        self.manifests[image.manifest.digest] = (image.manifest.data, image.manifest.media_type)

    def add_index(self, index: Index) -> None:
        for image in index.images:
            self.add_image(image)

    def blob_path(self, digest: str) -> Path:
        return self.directory / digest.split(":")[1]

    def manifest(self, digest: str) -> tuple[bytes, str]:
        return self.manifests[digest]

    def mount_sources(self, digest: str) -> list[str]:
        return self.mounts.get(digest, [])


# -- distribution ---------------------------------------------------------------------------


HUB_SERVICE = "dockyard"  # `dockyard serve`'s default --token-service
HUB_ISSUER = "dockyard"  # dockyard.hub.signing.ISSUER


@dataclass(frozen=True)
class TokenAuth:
    """Where distribution gets and checks its bearer tokens."""

    realm: str
    service: str
    issuer: str
    cert_path: Path


def hub_token_auth(hub: DockyardServer) -> TokenAuth:
    return TokenAuth(
        f"{hub.url}/token", HUB_SERVICE, HUB_ISSUER, hub.data_dir / "hub" / "token-signing.crt"
    )


class Distribution:
    def __init__(self, base: Path, *, htpasswd: Path | None, token: TokenAuth | None) -> None:
        self.base = base
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.addr}"
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(base / "storage")},
                "delete": {"enabled": True},
            },
            "http": {"addr": self.addr, "secret": "test-secret"},
        }
        if htpasswd is not None:
            config["auth"] = {"htpasswd": {"realm": "dockyard-test", "path": str(htpasswd)}}
        if token is not None:
            config["auth"] = {
                "token": {
                    "realm": token.realm,
                    "service": token.service,
                    "issuer": token.issuer,
                    "rootcertbundle": str(token.cert_path),
                }
            }
        self.config_path = base / "config.yml"
        # JSON is YAML; distribution reads it as such.
        self.config_path.write_text(json.dumps(config, indent=1))
        self.log_path = base / "registry.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Distribution:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [DOCKER_REGISTRY, "serve", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("docker-registry exited:\n" + self.log_path.read_text())
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v2/", timeout=1).status_code in (200, 401):
                    return self
            time.sleep(0.05)
        raise RuntimeError("docker-registry did not start:\n" + self.log_path.read_text())

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[Callable[..., Distribution]]:
    if not Path(DOCKER_REGISTRY).exists():
        pytest.fail("docker-registry is not installed; run scripts/install-test-deps.sh")
    started: list[Distribution] = []

    def start(
        *,
        htpasswd: Path | None = None,
        token: TokenServer | None = None,
        hub: DockyardServer | None = None,
    ) -> Distribution:
        base = tmp_path / f"distribution{len(started)}"
        base.mkdir()
        auth = hub_token_auth(hub) if hub is not None else token.auth if token else None
        server = Distribution(base, htpasswd=htpasswd, token=auth)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


# -- the hub ------------------------------------------------------------------------------------


@pytest.fixture
def hub(dockyard_server) -> Callable[..., DockyardServer]:  # type: ignore[no-untyped-def]
    """`hub({"alice": "pw"}, *serve_args, admins={"root"})`: a hub whose accounts exist first."""

    def start(users: dict[str, str], *args: str, admins: set[str] | None = None) -> DockyardServer:
        server = dockyard_server("--auth", "hub", *args, start=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
        for name, password in users.items():
            created = subprocess.run(
                [sys.executable, "-m", "dockyard", "user", "create", name]
                + ["--email", f"{name}@example.com", "--password-stdin"]
                + ["--data-dir", str(server.data_dir)]
                + (["--admin"] if name in (admins or set()) else []),
                input=password + "\n",
                env=env,
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if created.returncode != 0:
                pytest.fail(f"dockyard user create {name}: {created.stderr}", pytrace=False)
        return server.start()

    return start


# -- a server in a thread (token server, fault proxy) ---------------------------------------


class ThreadServer:
    """An ASGI app served by uvicorn in a background thread on 127.0.0.1."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.addr}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


# -- token server ---------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    """Docker token authentication, for real: distribution verifies what this signs."""

    base: Path
    users: dict[str, str]
    service: str = "test-registry"
    issuer: str = "dockyard-test-issuer"
    lifetime: int = 300
    requests: list[dict[str, Any]] = field(default_factory=list)
    refresh_tokens: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dockyard test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.cert_path = self.base / "token-signer.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.http = ThreadServer(self.app)
        self.realm = f"{self.http.url}/token"

    def start(self) -> TokenServer:
        self.http.start()
        return self

    @property
    def auth(self) -> TokenAuth:
        return TokenAuth(self.realm, self.service, self.issuer, self.cert_path)

    def stop(self) -> None:
        self.http.stop()

    def sign(self, subject: str, scopes: list[str]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind and name:
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from urllib.parse import parse_qsl

        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = parse_qsl(scope["query_string"].decode())
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        record: dict[str, Any] = {"method": scope["method"], "query": query}
        status, answer = 401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}
        if scope["method"] == "GET":
            scopes = [v for k, v in query if k == "scope"]
            user = None
            auth = headers.get("authorization", "")
            if auth.startswith("Basic "):
                name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                if self.users.get(name) == password:
                    user = name
                record["basic_user"] = name
            else:
                user = "anonymous"
                scopes = [s for s in scopes if s.endswith(":pull")]
            if user is not None:
                status, answer = 200, {"token": self.sign(user, scopes), "expires_in": 300}
                if dict(query).get("offline_token") == "true" and user != "anonymous":
                    refresh = secrets.token_hex(16)
                    self.refresh_tokens[refresh] = user
                    answer["refresh_token"] = refresh
        else:
            form = dict(parse_qsl(body.decode()))
            record["grant_type"] = form.get("grant_type")
            record["client_id"] = form.get("client_id")
            scopes = form.get("scope", "").split()
            user = None
            if form.get("grant_type") == "password":
                if self.users.get(form.get("username", "")) == form.get("password"):
                    user = form["username"]
            elif form.get("grant_type") == "refresh_token":
                user = self.refresh_tokens.get(form.get("refresh_token", ""))
            if user is not None:
                refresh = secrets.token_hex(16)
                self.refresh_tokens[refresh] = user
                status, answer = (
                    200,
                    {
                        "access_token": self.sign(user, scopes),
                        "expires_in": 300,
                        "refresh_token": refresh,
                    },
                )
            else:
                status, answer = 401, {"error": "invalid_grant"}
        self.requests.append(record)
        data = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[TokenServer]:
    server = TokenServer(tmp_path, {"alice": "tok3n-pass"}).start()
    yield server
    server.stop()


# -- fault-injecting proxy -----------------------------------------------------------------------

Fault = Callable[[str, str, int], str | None]
"""(method, path, nth request of that method+path kind) → None or a fault name."""


class FaultProxy:
    """Forwards to `upstream`; `self.fault(method, path, count)` picks requests to break.

    Fault names: "corrupt" (flip a byte of the response body), "truncate" (send half the body,
    then drop the connection), "500-after" (forward, then answer 500 anyway), "500" (answer 500
    without forwarding), "404" (answer 404 without forwarding).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.fault: Fault = lambda method, path, count: None
        self.counts: dict[tuple[str, str], int] = {}
        self.log: list[tuple[str, str, str | None]] = []
        self.ranges: list[str | None] = []  # the Range header of every blob GET
        self.inflight: dict[str, int] = {}  # requests of each kind being served now …
        self.most_inflight: dict[str, int] = {}  # … and the most at any one time
        self.http = ThreadServer(self.app)
        self.addr = self.http.addr

    def start(self) -> FaultProxy:
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()

    @staticmethod
    def kind(method: str, path: str) -> str:
        if "/blobs/uploads/" in path:
            return "upload"
        if "/blobs/" in path:
            return "blob"
        if "/manifests/" in path:
            return "manifest"
        return path

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = self.kind(scope["method"], scope["path"])
        self.inflight[kind] = self.inflight.get(kind, 0) + 1
        self.most_inflight[kind] = max(self.most_inflight.get(kind, 0), self.inflight[kind])
        try:
            await self._forward(scope, receive, send)
        finally:
            self.inflight[kind] -= 1

    async def _forward(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        method, path = scope["method"], scope["path"]
        key = (method, self.kind(method, path))
        self.counts[key] = self.counts.get(key, 0) + 1
        fault = self.fault(method, path, self.counts[key])
        self.log.append((method, path, fault))
        if method == "GET" and self.kind(method, path) == "blob":
            self.ranges.append(
                next((v.decode() for k, v in scope["headers"] if k.lower() == b"range"), None)
            )
        headers = [
            (k.decode(), v.decode())
            for k, v in scope["headers"]
            if k.decode().lower() not in ("host", "connection")
        ]

        async def body() -> Any:
            while True:
                message = await receive()
                if message.get("body"):
                    yield message["body"]
                if not message.get("more_body"):
                    break

        async def respond(status: int, data: bytes = b"") -> None:
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-length", str(len(data)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": data})

        if fault in ("500", "404"):
            async for _ in body():
                pass
            await respond(int(fault), b'{"errors":[{"code":"INJECTED","message":"injected"}]}')
            return
        url = (
            self.upstream
            + path
            + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        )
        async with httpx.AsyncClient(timeout=60) as client:
            request = client.build_request(
                method,
                url,
                headers=headers,
                content=body() if method in ("PUT", "PATCH", "POST") else None,
            )
            response = await client.send(request, stream=True)
            try:
                if fault == "500-after":
                    await response.aread()
                    await respond(500, b"{}")
                    return
                out_headers = [
                    (k.encode(), v.encode())
                    for k, v in response.headers.multi_items()
                    if k.lower() not in ("transfer-encoding", "connection", "content-encoding")
                ]
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status_code,
                        "headers": out_headers,
                    }
                )
                sent = 0
                total = int(response.headers.get("content-length", "0") or 0)
                async for chunk in response.aiter_raw():
                    if fault == "corrupt" and sent == 0 and chunk:
                        chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                    if fault == "truncate" and sent + len(chunk) > total // 2:
                        chunk = chunk[: total // 2 - sent]
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        raise ConnectionAbortedError("injected truncation")
                    sent += len(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            finally:
                await response.aclose()


@pytest.fixture
def fault_proxy() -> Iterator[Callable[[str], FaultProxy]]:
    proxies: list[FaultProxy] = []

    def start(upstream: str) -> FaultProxy:
        proxy = FaultProxy(upstream).start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.stop()


# -- a busybox image ---------------------------------------------------------------------------

HELLO = b"hello from the pushed image\n"


@pytest.fixture
def rootfs_tarball(tmp_path: Path) -> Path:
    """A gzipped root filesystem: static busybox, a few applets, and /etc/hello."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.fail("busybox is not installed; run scripts/install-test-deps.sh")
    tarball = tmp_path / "rootfs.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(busybox, arcname="bin/busybox")
        for applet in ("sh", "cat", "echo"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        info = tarfile.TarInfo("etc/hello")
        info.size = len(HELLO)
        tar.addfile(info, io.BytesIO(HELLO))
    return tarball


# -- the CLI --------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """An environment with a private DOCKER_CONFIG and store root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env["DOCKER_CONFIG"] = str(tmp_path / "docker-config")
    env["DOCKYARD_ROOT"] = str(tmp_path / "store")
    env["HOME"] = str(tmp_path / "home")
    return env


def dockyard_cli(
    *args: str, env: dict[str, str], input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "dockyard", *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"dockyard {' '.join(args)} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}",
            pytrace=False,
        )
    return result


def htpasswd_file(path: Path, users: dict[str, str]) -> Path:
    return write_htpasswd(path, users)


def which(name: str) -> str | None:
    return shutil.which(name)
