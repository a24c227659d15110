"""Push and pull through the client library against real registries: Dockyard and distribution."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import DockyardServer, write_htpasswd
from imagegen import make_image, make_multiarch

from dockyard.client.credentials import Credentials
from dockyard.client.errors import AuthError, NotFoundError
from dockyard.client.progress import RecordingProgress
from dockyard.client.registry import RegistryClient, is_listed_insecure, is_loopback
from dockyard.client.transfer import Platform, pull_image, push_image

from .conftest import DirSource


def sha256_hex(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_scheme_policy() -> None:
    assert is_loopback("localhost:5000") and is_loopback("127.8.9.1:80") and is_loopback("[::1]:5")
    assert not is_loopback("registry.example:5000") and not is_loopback("10.0.0.1")
    assert is_listed_insecure("10.1.2.3:5000", ["10.0.0.0/8"])
    assert is_listed_insecure("reg.lan:5000", ["reg.lan:5000"])
    assert is_listed_insecure("reg.lan:5000", ["reg.lan"])
    assert not is_listed_insecure("reg.lan:5000", ["other.lan"])
    assert RegistryClient("127.0.0.1:1")._schemes() == ["http", "https"]
    assert RegistryClient("reg.lan", insecure_registries=["reg.lan"])._schemes() == [
        "https",
        "http",
    ]
    assert RegistryClient("registry.example")._schemes() == ["https"]


async def test_plain_http_refused_for_remote_hosts() -> None:
    from dockyard.client.errors import TransportError

    # an unlisted non-loopback host gets HTTPS only; nothing listens there, so it fails fast
    async with RegistryClient("127.0.0.1.nip.invalid:9", timeout=2) as client:
        with pytest.raises(TransportError, match="--insecure-registry"):
            await client.ping()


async def test_push_pull_roundtrip_dockyard(registry: DockyardServer, tmp_path: Path) -> None:
    image = make_image([20 << 20, 3000, 0], seed=11)  # one chunked layer (small chunk size)
    source = DirSource(tmp_path / "src")
    source.add_image(image)
    progress = RecordingProgress()
    async with RegistryClient(registry.addr, chunk_size=8 << 20) as client:
        result = await push_image(
            client,
            "client/rt",
            "v1",
            image.manifest.data,
            image.manifest.media_type,
            source,
            progress=progress,
        )
        assert str(result.digest) == image.manifest.digest
        assert set(progress.statuses.values()) == {"Pushed"}
        again = RecordingProgress()
        await push_image(
            client,
            "client/rt",
            "v2",
            image.manifest.data,
            image.manifest.media_type,
            source,
            progress=again,
        )
        assert set(again.statuses.values()) == {"Layer already exists"}
        assert sorted(await client.list_tags("client/rt")) == ["v1", "v2"]

        pulled = await pull_image(client, "client/rt", "v1", tmp_path / "sink")
        assert str(pulled.digest) == image.manifest.digest
        assert pulled.config_bytes() == image.config.data
        for layer, path in zip(image.layers, pulled.layer_paths, strict=True):
            assert path is not None and sha256_hex(path) == layer.digest[7:]
        by_digest = await pull_image(client, "client/rt", image.manifest.digest, tmp_path / "s2")
        assert by_digest.manifest.digest == pulled.manifest.digest


async def test_cross_repository_mount(registry: DockyardServer, tmp_path: Path) -> None:
    image = make_image([5000], seed=12)
    source = DirSource(tmp_path / "src")
    source.add_image(image)
    async with RegistryClient(registry.addr) as client:
        await push_image(
            client, "client/mount-a", "v1", image.manifest.data, image.manifest.media_type, source
        )
        for blob in image.blobs:
            source.mounts[blob.digest] = ["client/mount-a"]
        progress = RecordingProgress()
        await push_image(
            client,
            "client/mount-b",
            "v1",
            image.manifest.data,
            image.manifest.media_type,
            source,
            progress=progress,
        )
    # automatic mounts may already make the blobs visible; either way nothing is uploaded
    assert all(
        s in ("Mounted from client/mount-a", "Layer already exists")
        for s in progress.statuses.values()
    ), progress.statuses


async def test_index_pushed_whole_and_platform_picked(
    registry: DockyardServer, tmp_path: Path
) -> None:
    index = make_multiarch([4000], seed=13)
    source = DirSource(tmp_path / "src")
    source.add_index(index)
    async with RegistryClient(registry.addr) as client:
        result = await push_image(
            client, "client/multi", "latest", index.manifest.data, index.manifest.media_type, source
        )
        assert str(result.digest) == index.manifest.digest
        arm = await pull_image(
            client,
            "client/multi",
            "latest",
            tmp_path / "arm",
            platform=Platform.parse("linux/arm64"),
        )
        assert str(arm.manifest.digest) == index.images[1].manifest.digest
        assert str(arm.digest) == index.manifest.digest
        host = await pull_image(client, "client/multi", "latest", tmp_path / "amd")
        assert str(host.manifest.digest) == index.images[0].manifest.digest
        with pytest.raises(NotFoundError, match="no manifest for platform linux/s390x"):
            await pull_image(
                client,
                "client/multi",
                "latest",
                tmp_path / "x",
                platform=Platform.parse("linux/s390x"),
            )


async def test_tags_pagination(registry: DockyardServer, tmp_path: Path) -> None:
    image = make_image([100], seed=14)
    source = DirSource(tmp_path / "src")
    source.add_image(image)
    async with RegistryClient(registry.addr) as client:
        for n in range(7):
            await push_image(
                client,
                "client/pages",
                f"t{n}",
                image.manifest.data,
                image.manifest.media_type,
                source,
            )
        assert sorted(await client.list_tags("client/pages", page_size=3)) == [
            f"t{n}" for n in range(7)
        ]


async def test_dockyard_htpasswd_auth(dockyard_server, tmp_path: Path) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "correct-horse"})
    server = dockyard_server("--auth", "htpasswd", "--htpasswd", str(htpasswd))
    image = make_image([2000], seed=15)
    source = DirSource(tmp_path / "src")
    source.add_image(image)
    async with RegistryClient(server.addr, Credentials("alice", "wrong")) as client:
        with pytest.raises(AuthError) as caught:
            await client.login()
        assert "wrong" not in str(caught.value)
    async with RegistryClient(server.addr) as client:
        with pytest.raises(AuthError, match="authentication required"):
            await pull_image(client, "alice/x", "v1", tmp_path / "sink")
    async with RegistryClient(server.addr, Credentials("alice", "correct-horse")) as client:
        assert await client.login() is None
        await push_image(
            client, "alice/web", "v1", image.manifest.data, image.manifest.media_type, source
        )
        pulled = await pull_image(client, "alice/web", "v1", tmp_path / "sink")
        assert pulled.config_bytes() == image.config.data


async def test_distribution_htpasswd(distribution, tmp_path: Path) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"bob": "b0b-pass"})
    server = distribution(htpasswd=htpasswd)
    image = make_image([20 << 20, 1000], seed=16)
    index = make_multiarch([1500], seed=17)
    source = DirSource(tmp_path / "src")
    source.add_image(image)
    source.add_index(index)
    async with RegistryClient(server.addr, Credentials("bob", "nope")) as client:
        with pytest.raises(AuthError):
            await client.login()
    async with RegistryClient(server.addr, Credentials("bob", "b0b-pass"), chunk_size=8 << 20) as c:
        await c.login()
        await push_image(c, "bob/app", "v1", image.manifest.data, image.manifest.media_type, source)
        await push_image(
            c, "bob/multi", "v1", index.manifest.data, index.manifest.media_type, source
        )
        pulled = await pull_image(c, "bob/app", "v1", tmp_path / "sink")
        assert [p.name for p in pulled.layer_paths if p] == [b.digest[7:] for b in image.layers]
        arm = await pull_image(
            c, "bob/multi", "v1", tmp_path / "sink2", platform=Platform.parse("linux/arm64")
        )
        assert str(arm.manifest.digest) == index.images[1].manifest.digest
        source.mounts = {b.digest: ["bob/app"] for b in image.blobs}
        progress = RecordingProgress()
        await push_image(
            c,
            "bob/copy",
            "v1",
            image.manifest.data,
            image.manifest.media_type,
            source,
            progress=progress,
        )
        assert set(progress.statuses.values()) == {"Mounted from bob/app"}


async def test_distribution_bearer_tokens(distribution, token_server, tmp_path: Path) -> None:
    server = distribution(token=token_server)
    image = make_image([3000], seed=18)
    source = DirSource(tmp_path / "src")
    source.add_image(image)
    # anonymous: the token server grants pull only, so a push is refused
    async with RegistryClient(server.addr) as client:
        with pytest.raises(AuthError):
            await push_image(
                client, "alice/tok", "v1", image.manifest.data, image.manifest.media_type, source
            )
    # wrong password
    async with RegistryClient(
        server.addr, Credentials("alice", "bad"), want_refresh_token=True
    ) as client:
        with pytest.raises(AuthError, match="incorrect username or password"):
            await client.login()
    # login with the OAuth2 password grant yields a refresh token …
    async with RegistryClient(
        server.addr, Credentials("alice", "tok3n-pass"), want_refresh_token=True
    ) as client:
        refresh = await client.login()
    assert refresh
    assert token_server.requests[-1]["grant_type"] == "password"
    assert token_server.requests[-1]["client_id"] == "dockyard"
    # … which alone (no password) then pushes and pulls; tokens are reused per scope
    token_server.requests.clear()
    async with RegistryClient(server.addr, Credentials(identity_token=refresh)) as client:
        await push_image(
            client, "alice/tok", "v1", image.manifest.data, image.manifest.media_type, source
        )
        pulled = await pull_image(client, "alice/tok", "v1", tmp_path / "sink")
        assert pulled.config_bytes() == image.config.data
    grants = {r.get("grant_type") for r in token_server.requests}
    assert grants == {"refresh_token"}
    assert len(token_server.requests) <= 3, token_server.requests  # cached, not one per request
    # Basic credentials go through GET realm?service=&scope=
    token_server.requests.clear()
    async with RegistryClient(server.addr, Credentials("alice", "tok3n-pass")) as client:
        pulled = await pull_image(client, "alice/tok", "v1", tmp_path / "sink3")
    assert token_server.requests and all(
        r["method"] == "GET" and r.get("basic_user") == "alice" for r in token_server.requests
    )
    scopes = [v for r in token_server.requests for k, v in r["query"] if k == "scope"]
    assert "repository:alice/tok:pull" in scopes


async def test_ping_reports_unreachable(tmp_path: Path) -> None:
    from conftest import free_port

    from dockyard.client.errors import TransportError

    async with RegistryClient(f"127.0.0.1:{free_port()}", timeout=3) as client:
        with pytest.raises(TransportError, match="cannot reach registry"):
            await client.ping()
