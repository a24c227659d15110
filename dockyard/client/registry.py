"""One registry host over the OCI distribution API: ping, blobs, uploads, manifests, tags, search.

Scheme policy (docker's): plain HTTP is allowed for localhost, 127.0.0.0/8 and ::1, and for
hosts listed as insecure (DOCKYARD_INSECURE_REGISTRIES, `--insecure-registry`, entries
`host[:port]` or a CIDR); everything else is HTTPS, verified against the system CAs plus
DOCKYARD_CA_FILE and /etc/docker/certs.d/<host>/*.crt (a `client.cert`/`client.key` pair there
is presented too). Blobs stream to and from files: memory stays flat whatever the layer size.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from dockyard.client.auth import Authenticator, _server_message
from dockyard.client.credentials import Credentials
from dockyard.client.errors import (
    AuthError,
    ClientError,
    DigestMismatch,
    NotFoundError,
    TransportError,
)
from dockyard.client.progress import NoProgress, Progress, short_id
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest

MANIFEST_ACCEPT = ", ".join(
    [mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST]
)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MONOLITHIC_LIMIT = 16 * 1024 * 1024  # blobs up to this size go in one PUT
CHUNK_SIZE = 64 * 1024 * 1024  # larger ones in PATCH chunks of this size
READ_SIZE = 1024 * 1024
RETRIES = 5
CERTS_DIRS = (Path("/etc/docker/certs.d"), Path("/etc/dockyard/certs.d"))


def _larger_reads() -> None:
    """httpcore reads 64 KiB per socket read; blobs stream much faster with 1 MiB reads."""
    with contextlib.suppress(ImportError, AttributeError):
        from httpcore._async.http11 import AsyncHTTP11Connection

        if getattr(AsyncHTTP11Connection, "READ_NUM_BYTES", 0) < READ_SIZE:
            AsyncHTTP11Connection.READ_NUM_BYTES = READ_SIZE


_larger_reads()


def split_host(host: str) -> tuple[str, str | None]:
    """`[::1]:5000` → ("::1", "5000"); `localhost` → ("localhost", None)."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, rest[1:] if rest.startswith(":") else None
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        return name, port
    return host, None


def is_loopback(host: str) -> bool:
    name, _ = split_host(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def insecure_registries_from_env() -> list[str]:
    raw = os.environ.get("DOCKYARD_INSECURE_REGISTRIES", "")
    return [item.strip() for item in raw.replace(";", ",").split(",") if item.strip()]


def is_listed_insecure(host: str, insecure: list[str] | tuple[str, ...]) -> bool:
    name, _ = split_host(host)
    for entry in insecure:
        entry = entry.removeprefix("http://").removeprefix("https://").rstrip("/")
        if entry in (host, name):
            return True
        if "/" in entry:
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(name) in ipaddress.ip_network(entry, strict=False):
                    return True
    return False


def tls_context(host: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca_file = os.environ.get("DOCKYARD_CA_FILE")
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    for base in CERTS_DIRS:
        directory = base / host
        if not directory.is_dir():
            continue
        for cert in sorted(directory.glob("*.crt")):
            context.load_verify_locations(cafile=str(cert))
        for cert in sorted(directory.glob("*.cert")):
            key = cert.with_suffix(".key")
            if key.exists():
                context.load_cert_chain(str(cert), str(key))
    return context


@dataclass(frozen=True, slots=True)
class ManifestResponse:
    data: bytes
    media_type: str
    digest: Digest


@dataclass(frozen=True, slots=True)
class SearchResult:
    name: str
    description: str
    stars: int
    official: bool
    automated: bool


class _Retry(Exception):
    """A transient failure worth retrying (5xx, dropped connection)."""


def _error(method: str, what: str, response: httpx.Response) -> ClientError:
    detail = _server_message(response)
    status = response.status_code
    if status == 404:
        return NotFoundError(f"{what}: not found{detail}")
    if status in (401, 403):
        return AuthError(f"{what}: {'unauthorized' if status == 401 else 'denied'}{detail}")
    return ClientError(f"{method} {what}: the registry answered {status}{detail}")


def repository_scope(repository: str, *actions: str) -> str:
    return f"repository:{repository}:{','.join(actions)}"


class RegistryClient:
    """A client of one registry host; use as `async with RegistryClient(host) as client:`."""

    def __init__(
        self,
        host: str,
        credentials: Credentials | None = None,
        *,
        insecure_registries: list[str] | tuple[str, ...] | None = None,
        concurrency: int = 6,
        monolithic_limit: int = MONOLITHIC_LIMIT,
        chunk_size: int = CHUNK_SIZE,
        want_refresh_token: bool = False,
        timeout: float = 60.0,
    ) -> None:
        self.host = host
        insecure = list(insecure_registries or ()) + insecure_registries_from_env()
        self.listed_insecure = is_listed_insecure(host, insecure)
        self.plain_http_allowed = is_loopback(host) or self.listed_insecure
        self.monolithic_limit = monolithic_limit
        self.chunk_size = chunk_size
        self.slots = asyncio.Semaphore(max(1, concurrency))
        # docker treats loopback registries as insecure too (no verification), which also spares
        # loading the system CA bundle on every command against a local registry
        verify: ssl.SSLContext | bool = (
            False if self.listed_insecure or is_loopback(host) else tls_context(host)
        )
        self.http = httpx.AsyncClient(
            verify=verify,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            limits=httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=16),
            follow_redirects=True,
            headers={"User-Agent": "dockyard"},
        )
        self.auth = Authenticator(
            host, credentials, self.http, want_refresh_token=want_refresh_token
        )
        self.base_url: str | None = None

    def _error(self, method: str, what: str, response: httpx.Response) -> ClientError:
        if response.status_code == 401 and self.auth.credentials is None:
            return AuthError(f"{what}: authentication required (run `dockyard login {self.host}`)")
        return _error(method, what, response)

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    # --- connection and auth ----------------------------------------------------------

    def _schemes(self) -> list[str]:
        if is_loopback(self.host):
            return ["http", "https"]
        if self.listed_insecure:
            return ["https", "http"]
        return ["https"]

    async def ping(self) -> httpx.Response:
        """GET /v2/, choosing the scheme; learns the auth challenge from a 401."""
        if self.base_url is not None:
            response = await self.http.get(f"{self.base_url}/v2/")
        else:
            errors: list[str] = []
            response = None
            for scheme in self._schemes():
                base = f"{scheme}://{self.host}"
                try:
                    response = await self.http.get(f"{base}/v2/")
                except httpx.HTTPError as exc:
                    errors.append(f"{base}: {type(exc).__name__}: {exc}")
                    continue
                if response.status_code in (200, 401):
                    self.base_url = base
                    break
                errors.append(f"{base}/v2/ answered {response.status_code}")
                response = None
            if response is None:
                hint = "" if self.plain_http_allowed else " (plain HTTP needs --insecure-registry)"
                raise TransportError(
                    f"cannot reach registry {self.host}: " + "; ".join(errors) + hint
                )
        if response.status_code == 401:
            self.auth.learn(response)
        return response

    async def login(self) -> str | None:
        """Check the credentials with the full challenge flow; returns a refresh token if issued.

        Raises AuthError when they are refused.
        """
        response = await self.ping()
        if response.status_code == 200:
            return None
        challenge = self.auth.challenge
        if challenge is None:
            raise AuthError(f"{self.host} answered 401 without a challenge we understand")
        if self.auth.credentials is None:
            raise AuthError(f"{self.host}: authentication required")
        header = await self.auth.header([], fresh=True)
        assert self.base_url is not None
        check = await self.http.get(f"{self.base_url}/v2/", headers={"Authorization": header or ""})
        if check.status_code != 200:
            raise AuthError(
                f"{self.host}: unauthorized: incorrect username or password"
                + _server_message(check)
            )
        return self.auth.refresh_token

    async def _ensure(self) -> str:
        if self.base_url is None:
            await self.ping()
        assert self.base_url is not None
        return self.base_url

    def _url(self, path_or_url: str) -> httpx.URL:
        assert self.base_url is not None
        return httpx.URL(self.base_url).join(path_or_url)

    async def request(
        self,
        method: str,
        path_or_url: str | httpx.URL,
        *,
        scopes: list[str],
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        body: Any = None,
        stream: bool = False,
    ) -> httpx.Response:
        """One request with the auth flow: on 401, learn the challenge and retry once.

        `body` is bytes or a zero-argument callable returning a fresh async iterator of bytes
        (so the single retry can send it again).
        """
        await self._ensure()
        url = path_or_url if isinstance(path_or_url, httpx.URL) else self._url(path_or_url)
        if params:
            url = url.copy_merge_params(params)
        for attempt in range(2):
            request_headers = dict(headers or {})
            authorization = await self.auth.header(scopes, fresh=attempt > 0)
            if authorization:
                request_headers["Authorization"] = authorization
            content = body() if callable(body) else body
            request = self.http.build_request(method, url, headers=request_headers, content=content)
            response = await self.http.send(request, stream=stream)
            if response.status_code != 401 or attempt == 1:
                return response
            await response.aclose()
            scopes = await self.auth.after_unauthorized(response, scopes)
        raise AssertionError("unreachable")

    async def _idempotent(
        self, method: str, path: str, *, scopes: list[str], what: str, **kwargs: Any
    ) -> httpx.Response:
        """GET/HEAD retried on dropped connections and 5xx answers."""
        delay = 0.2
        for attempt in range(RETRIES):
            try:
                response = await self.request(method, path, scopes=scopes, **kwargs)
            except httpx.TransportError as exc:
                if attempt == RETRIES - 1:
                    raise TransportError(f"{what}: {type(exc).__name__}: {exc}") from None
            else:
                if response.status_code < 500 or attempt == RETRIES - 1:
                    return response
                await response.aclose()
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    # --- manifests ----------------------------------------------------------------------

    async def get_manifest(self, repository: str, reference: str) -> ManifestResponse:
        what = (
            f"manifest {repository}:{reference}"
            if "sha256:" not in reference
            else (f"manifest {repository}@{reference}")
        )
        response = await self._idempotent(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            scopes=[repository_scope(repository, "pull")],
            what=what,
            headers={"Accept": MANIFEST_ACCEPT},
        )
        if response.status_code != 200:
            raise self._error("GET", what, response)
        data = response.content
        if len(data) > MAX_MANIFEST_BYTES:
            raise ClientError(f"{what} is larger than {MAX_MANIFEST_BYTES} bytes")
        actual = Digest.of(data)
        if reference.startswith("sha") and ":" in reference:
            expected = Digest.parse(reference)
            if Digest.of(data, expected.algorithm) != expected:
                raise DigestMismatch(f"{what}: the registry sent bytes with digest {actual}")
        else:
            header = response.headers.get("docker-content-digest")
            if header and header.startswith("sha256:") and header != str(actual):
                raise DigestMismatch(
                    f"{what}: Docker-Content-Digest {header} does not match the bytes ({actual})"
                )
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        with contextlib.suppress(ValueError, AttributeError):
            declared = json.loads(data).get("mediaType")
            if isinstance(declared, str) and declared:
                media_type = declared
        return ManifestResponse(data, media_type, actual)

    async def put_manifest(
        self, repository: str, reference: str, data: bytes, media_type: str
    ) -> Digest:
        what = f"manifest {repository}:{reference}"
        for attempt in range(RETRIES):
            try:
                response = await self.request(
                    "PUT",
                    f"/v2/{repository}/manifests/{reference}",
                    scopes=[repository_scope(repository, "pull", "push")],
                    headers={"Content-Type": media_type},
                    body=data,
                )
            except httpx.TransportError as exc:
                if attempt == RETRIES - 1:
                    raise TransportError(f"PUT {what}: {type(exc).__name__}: {exc}") from None
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            if response.status_code in (200, 201, 202):
                return Digest.of(data)
            if response.status_code >= 500 and attempt < RETRIES - 1:
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            raise self._error("PUT", what, response)
        raise AssertionError("unreachable")

    async def list_tags(self, repository: str, page_size: int = 1000) -> list[str]:
        tags: list[str] = []
        what = f"tags of {repository}"
        path: str = f"/v2/{repository}/tags/list?n={page_size}"
        for _ in range(10000):
            response = await self._idempotent(
                "GET", path, scopes=[repository_scope(repository, "pull")], what=what
            )
            if response.status_code != 200:
                raise self._error("GET", what, response)
            tags.extend(response.json().get("tags") or [])
            link = response.links.get("next", {}).get("url")
            if not link:
                break
            path = link
        return tags

    # --- blobs --------------------------------------------------------------------------

    async def blob_exists(self, repository: str, digest: str) -> bool:
        response = await self._idempotent(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            scopes=[repository_scope(repository, "pull", "push")],
            what=f"blob {digest} in {repository}",
        )
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self._error("HEAD", f"blob {digest} in {repository}", response)

    async def start_upload(
        self, repository: str, *, mount: str | None = None, source: str | None = None
    ) -> tuple[bool, httpx.URL | None]:
        """POST an upload; with `mount`+`source` try a cross-repository mount first.

        Returns (mounted, upload URL).
        """
        scopes = [repository_scope(repository, "pull", "push")]
        params = None
        if mount and source:
            scopes.append(repository_scope(source, "pull"))
            params = {"mount": mount, "from": source}
        what = f"upload to {repository}"
        for attempt in range(RETRIES):
            try:
                response = await self.request(
                    "POST",
                    f"/v2/{repository}/blobs/uploads/",
                    scopes=scopes,
                    params=params,
                    headers={"Content-Length": "0"},
                )
            except httpx.TransportError as exc:
                if attempt == RETRIES - 1:
                    raise TransportError(f"{what}: {type(exc).__name__}: {exc}") from None
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            if response.status_code == 201 and mount:
                return True, None
            if response.status_code == 202:
                location = response.headers.get("location")
                if not location:
                    raise ClientError(f"{what}: the registry sent no upload Location")
                return False, self._url(location)
            if response.status_code >= 500 and attempt < RETRIES - 1:
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            raise self._error("POST", what, response)
        raise AssertionError("unreachable")

    def _file_body(
        self, path: Path, start: int, end: int, key: str, progress: Progress, base: int = 0
    ):
        """A factory of async iterators over path[start:end], reporting progress."""

        async def chunks() -> AsyncIterator[bytes]:
            with open(path, "rb") as handle:
                handle.seek(start)
                position = start
                while position < end:
                    data = handle.read(min(READ_SIZE, end - position))
                    if not data:
                        raise ClientError(f"{path} is shorter than expected")
                    position += len(data)
                    yield data
                    progress.advance(key, base + position)

        return chunks

    async def upload_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        path: Path,
        *,
        location: httpx.URL | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Upload the file `path` (whose digest is `digest`): one PUT, or PATCH chunks."""
        progress = progress or NoProgress()
        key = short_id(digest)
        if size <= self.monolithic_limit:
            await self._upload_monolithic(repository, digest, size, path, location, key, progress)
        else:
            await self._upload_chunked(repository, digest, size, path, location, key, progress)

    async def _upload_monolithic(
        self,
        repository: str,
        digest: str,
        size: int,
        path: Path,
        location: httpx.URL | None,
        key: str,
        progress: Progress,
    ) -> None:
        what = f"upload of {digest} to {repository}"
        scopes = [repository_scope(repository, "pull", "push")]
        for attempt in range(RETRIES):
            if location is None:
                _, location = await self.start_upload(repository)
            assert location is not None
            try:
                response = await self.request(
                    "PUT",
                    location.copy_merge_params({"digest": digest}),
                    scopes=scopes,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(size),
                    },
                    body=self._file_body(path, 0, size, key, progress),
                )
            except httpx.TransportError as exc:
                if attempt == RETRIES - 1:
                    raise TransportError(f"{what}: {type(exc).__name__}: {exc}") from None
            else:
                if response.status_code in (201, 204):
                    return
                if response.status_code < 500 or attempt == RETRIES - 1:
                    raise self._error("PUT", what, response)
            location = None
            progress.advance(key, 0)
            await asyncio.sleep(0.2 * 2**attempt)

    async def upload_status(self, location: httpx.URL, scopes: list[str]) -> tuple[int, httpx.URL]:
        """How many bytes an upload session holds (GET on its URL), and its current URL."""
        response = await self.request("GET", location, scopes=scopes)
        if response.status_code not in (200, 204):
            raise self._error("GET", "upload status", response)
        new_location = response.headers.get("location")
        url = self._url(new_location) if new_location else location
        value = response.headers.get("range", "")
        _, _, end = value.partition("-")
        try:
            last = int(end)
        except ValueError:
            return 0, url
        return (last + 1 if last > 0 else 0), url

    async def _upload_chunked(
        self,
        repository: str,
        digest: str,
        size: int,
        path: Path,
        location: httpx.URL | None,
        key: str,
        progress: Progress,
    ) -> None:
        what = f"upload of {digest} to {repository}"
        scopes = [repository_scope(repository, "pull", "push")]
        if location is None:
            _, location = await self.start_upload(repository)
        assert location is not None
        offset = 0
        failures = 0
        while True:
            try:
                if offset < size:
                    end = min(offset + self.chunk_size, size)
                    response = await self.request(
                        "PATCH",
                        location,
                        scopes=scopes,
                        headers={
                            "Content-Type": "application/octet-stream",
                            "Content-Range": f"{offset}-{end - 1}",
                            "Content-Length": str(end - offset),
                        },
                        body=self._file_body(path, offset, end, key, progress),
                    )
                    if response.status_code != 202:
                        if response.status_code >= 500 or response.status_code == 416:
                            raise _Retry(f"PATCH answered {response.status_code}")
                        raise self._error("PATCH", what, response)
                    new_location = response.headers.get("location")
                    if new_location:
                        location = self._url(new_location)
                    offset = end
                    failures = 0
                    continue
                response = await self.request(
                    "PUT",
                    location.copy_merge_params({"digest": digest}),
                    scopes=scopes,
                    headers={"Content-Length": "0"},
                    body=b"",
                )
                if response.status_code in (201, 204):
                    return
                if response.status_code >= 500:
                    raise _Retry(f"PUT answered {response.status_code}")
                raise self._error("PUT", what, response)
            except (httpx.TransportError, _Retry) as exc:
                failures += 1
                if failures > RETRIES:
                    raise TransportError(
                        f"{what}: gave up after {RETRIES} retries: {exc}"
                    ) from None
                await asyncio.sleep(0.2 * 2 ** (failures - 1))
                try:
                    offset, location = await self.upload_status(location, scopes)
                except (httpx.TransportError, ClientError):
                    offset, location = 0, None
                if location is None or offset > size:
                    _, location = await self.start_upload(repository)
                    offset = 0
                assert location is not None
                progress.advance(key, offset)

    async def download_blob(
        self,
        repository: str,
        digest: str,
        size: int | None,
        dest: Path,
        *,
        progress: Progress | None = None,
    ) -> None:
        """Stream a blob into `dest`, verified: a temp file beside it is renamed only if the bytes
        hash to `digest`. Resumes with Range after a dropped or truncated response."""
        progress = progress or NoProgress()
        key = short_id(digest)
        expected = Digest.parse(digest)
        what = f"blob {digest} of {repository}"
        scopes = [repository_scope(repository, "pull")]
        tmp = dest.with_name(f".partial-{expected.encoded}-{os.getpid()}-{id(dest):x}")
        hasher = expected.hasher()
        received = 0
        failures = 0
        try:
            with open(tmp, "wb") as out:
                while True:
                    headers = {"Range": f"bytes={received}-"} if received else {}
                    try:
                        response = await self.request(
                            "GET",
                            f"/v2/{repository}/blobs/{digest}",
                            scopes=scopes,
                            headers=headers,
                            stream=True,
                        )
                        try:
                            if response.status_code >= 500:
                                raise _Retry(f"GET answered {response.status_code}")
                            if response.status_code == 200 and received:
                                out.seek(0)
                                out.truncate()
                                hasher, received = expected.hasher(), 0
                            elif response.status_code == 206:
                                start = _content_range_start(response.headers.get("content-range"))
                                if start != received:
                                    raise _Retry(f"asked for byte {received}, got {start}")
                            elif response.status_code != 200:
                                await response.aread()
                                raise self._error("GET", what, response)
                            async for data in response.aiter_raw():
                                received += len(data)
                                if size is not None and received > size:
                                    raise DigestMismatch(
                                        f"{what}: the registry sent more than {size} bytes"
                                    )
                                out.write(data)
                                hasher.update(data)
                                progress.advance(key, received)
                        finally:
                            await response.aclose()
                    except (httpx.TransportError, _Retry) as exc:
                        failures += 1
                        if failures > RETRIES:
                            raise TransportError(
                                f"{what}: gave up after {RETRIES} retries: {exc}"
                            ) from None
                        await asyncio.sleep(0.1 * 2 ** (failures - 1))
                        continue
                    if size is not None and received < size:
                        failures += 1
                        if failures > RETRIES:
                            raise TransportError(f"{what}: body ends at {received} of {size} bytes")
                        continue
                    break
            actual = Digest(expected.algorithm, hasher.hexdigest())
            if actual != expected:
                raise DigestMismatch(
                    f"{what}: the registry sent bytes with digest {actual} (refused)"
                )
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    # --- search -------------------------------------------------------------------------

    async def search(self, term: str, limit: int = 25) -> list[SearchResult]:
        response = await self._idempotent(
            "GET",
            "/v1/search",
            scopes=[],
            what=f"search on {self.host}",
            params={"q": term, "n": str(limit)},
        )
        if response.status_code != 200:
            raise self._error("GET", f"search on {self.host}", response)
        try:
            results = response.json().get("results") or []
        except ValueError:
            raise ClientError(f"search on {self.host}: the answer is not JSON") from None
        found = []
        for item in results[:limit]:
            if not isinstance(item, dict):
                continue
            found.append(
                SearchResult(
                    name=str(item.get("name") or item.get("repo_name") or ""),
                    description=str(item.get("description") or item.get("short_description") or ""),
                    stars=int(item.get("star_count") or 0),
                    official=bool(item.get("is_official")),
                    automated=bool(item.get("is_automated")),
                )
            )
        return found


def _content_range_start(value: str | None) -> int | None:
    """`bytes 100-199/200` → 100."""
    if not value:
        return None
    text = value.strip().removeprefix("bytes").strip()
    head = text.split("-", 1)[0]
    try:
        return int(head)
    except ValueError:
        return None


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while data := handle.read(READ_SIZE):
            hasher.update(data)
    return f"sha256:{hasher.hexdigest()}"
