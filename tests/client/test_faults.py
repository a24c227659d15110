"""Bad peers: a proxy in front of a real Dockyard server corrupts, truncates and fails requests
(and counts them, to show that layers move in parallel)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DockyardServer
from imagegen import make_image

from dockyard.client.errors import ClientError, DigestMismatch, NotFoundError
from dockyard.client.progress import RecordingProgress
from dockyard.client.registry import RegistryClient
from dockyard.client.transfer import pull_image, push_image

from .conftest import DirSource, FaultProxy


async def _push(addr: str, repo: str, image, tmp_path: Path, **kwargs) -> None:  # type: ignore[no-untyped-def]
    source = DirSource(tmp_path / "src")
    source.add_image(image)
    async with RegistryClient(addr, **kwargs) as client:
        await push_image(client, repo, "v1", image.manifest.data, image.manifest.media_type, source)


def _files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


async def test_corrupted_blob_is_refused(registry: DockyardServer, fault_proxy, tmp_path: Path):
    image = make_image([50_000], seed=21)
    await _push(registry.addr, "faults/corrupt", image, tmp_path)
    proxy: FaultProxy = fault_proxy(registry.url)
    layer = image.layers[0].digest
    proxy.fault = lambda m, path, n: "corrupt" if m == "GET" and path.endswith(layer) else None
    sink = tmp_path / "sink"
    async with RegistryClient(proxy.addr) as client:
        with pytest.raises(DigestMismatch, match=f"blob {layer}"):
            await pull_image(client, "faults/corrupt", "v1", sink)
    # the config (fine) may be there; the corrupt layer and any partial file are not
    assert layer[7:] not in _files(sink)
    assert not [n for n in _files(sink) if n.startswith(".partial")]


async def test_truncated_body_resumes_with_range(
    registry: DockyardServer, fault_proxy, tmp_path: Path
):
    image = make_image([3 << 20], seed=22)
    await _push(registry.addr, "faults/trunc", image, tmp_path)
    proxy: FaultProxy = fault_proxy(registry.url)
    layer = image.layers[0].digest
    proxy.fault = lambda m, path, n: (
        "truncate" if m == "GET" and path.endswith(layer) and n <= 2 else None
    )
    async with RegistryClient(proxy.addr) as client:
        pulled = await pull_image(client, "faults/trunc", "v1", tmp_path / "sink")
    path = pulled.layer_paths[0]
    assert path is not None and path.read_bytes() == image.layers[0].data
    gets = [f for m, p, f in proxy.log if m == "GET" and p.endswith(layer)]
    assert gets[0] == "truncate" and len(gets) >= 2
    assert any(r and r.startswith("bytes=") and r != "bytes=0-" for r in proxy.ranges)


async def test_500_in_the_middle_of_a_chunked_upload(
    registry: DockyardServer, fault_proxy, tmp_path: Path
):
    image = make_image([12 << 20], seed=23)
    proxy: FaultProxy = fault_proxy(registry.url)
    # the second PATCH reaches the server, then the client is told 500; the third is dropped
    proxy.fault = lambda m, path, n: {2: "500-after", 3: "500"}.get(n) if m == "PATCH" else None
    await _push(
        proxy.addr, "faults/upload", image, tmp_path, monolithic_limit=1 << 20, chunk_size=2 << 20
    )
    patches = [f for m, _, f in proxy.log if m == "PATCH"]
    assert "500-after" in patches and "500" in patches
    assert any(m == "GET" and "/blobs/uploads/" in p for m, p, _ in proxy.log)  # asked offset
    async with RegistryClient(registry.addr) as client:
        pulled = await pull_image(client, "faults/upload", "v1", tmp_path / "sink")
    assert pulled.layer_paths[0].read_bytes() == image.layers[0].data  # type: ignore[union-attr]


async def test_500_on_monolithic_put_is_retried(
    registry: DockyardServer, fault_proxy, tmp_path: Path
):
    image = make_image([4000], seed=24)
    proxy: FaultProxy = fault_proxy(registry.url)
    proxy.fault = lambda m, path, n: "500" if m == "PUT" and "uploads" in path and n == 1 else None
    await _push(proxy.addr, "faults/put", image, tmp_path)
    async with RegistryClient(registry.addr) as client:
        assert await client.blob_exists("faults/put", image.layers[0].digest)


async def test_manifest_referencing_missing_layer(
    registry: DockyardServer, fault_proxy, tmp_path: Path
):
    image = make_image([1000, 2000], seed=25)
    await _push(registry.addr, "faults/missing", image, tmp_path)
    proxy: FaultProxy = fault_proxy(registry.url)
    gone = image.layers[1].digest
    proxy.fault = lambda m, path, n: "404" if path.endswith(gone) else None
    progress = RecordingProgress()
    async with RegistryClient(proxy.addr) as client:
        with pytest.raises(NotFoundError, match=f"references blob {gone}.*does not have"):
            await pull_image(client, "faults/missing", "v1", tmp_path / "sink", progress=progress)
    assert gone[7:] not in _files(tmp_path / "sink")


def _store_contents(store) -> tuple[list[str], list[str], list[str], list[str]]:  # type: ignore[no-untyped-def]
    """(images, layers, blobs, leftovers in tmp) of a local store."""
    return (
        store.image_ids(),
        _files(store.layers),
        _files(store.blobs),
        _files(store.tmp),
    )


@pytest.mark.parametrize("fault", ["corrupt", "missing"])
async def test_failed_pull_stores_nothing_and_a_retry_completes(
    registry: DockyardServer, fault_proxy, tmp_path: Path, fault: str
) -> None:
    from dockyard.cli.images_io import pull_into_store
    from dockyard.engine.store import Store
    from dockyard.oci.reference import parse_reference

    image = make_image([30_000, 60_000], seed=26 if fault == "corrupt" else 27)
    repo = f"faults/store-{fault}"
    await _push(registry.addr, repo, image, tmp_path)
    proxy: FaultProxy = fault_proxy(registry.url)
    bad = image.layers[1].digest
    injected = "corrupt" if fault == "corrupt" else "404"
    proxy.fault = lambda m, path, n: injected if m == "GET" and path.endswith(bad) else None
    store = Store(tmp_path / "store")
    empty = _store_contents(store)
    ref = parse_reference(f"{proxy.addr}/{repo}:v1")
    expected = DigestMismatch if fault == "corrupt" else NotFoundError
    async with RegistryClient(proxy.addr) as client:
        with pytest.raises(expected, match=bad):
            await pull_into_store(store, client, ref, RecordingProgress())
    assert _store_contents(store) == empty
    assert not store.tags()

    proxy.fault = lambda m, path, n: None
    async with RegistryClient(proxy.addr) as client:
        outcome = await pull_into_store(store, client, ref, RecordingProgress())
    assert outcome.new and outcome.digest == image.manifest.digest
    assert store.resolve_image(f"{proxy.addr}/{repo}:v1") == image.config.digest
    for layer in image.layers:
        assert store.has_layer(layer.diff_id)


async def test_push_that_keeps_failing_is_a_clear_error_and_a_retry_completes(
    registry: DockyardServer, fault_proxy, tmp_path: Path
) -> None:
    image = make_image([5000, 6000], seed=28)
    proxy: FaultProxy = fault_proxy(registry.url)
    proxy.fault = lambda m, path, n: "500" if m == "PUT" and "/manifests/" in path else None
    with pytest.raises(ClientError, match="manifest faults/again:v1: the registry answered 500"):
        await _push(proxy.addr, "faults/again", image, tmp_path)
    proxy.fault = lambda m, path, n: None
    progress = RecordingProgress()
    source = DirSource(tmp_path / "src")
    source.add_image(image)
    async with RegistryClient(proxy.addr) as client:
        result = await push_image(
            client,
            "faults/again",
            "v1",
            image.manifest.data,
            image.manifest.media_type,
            source,
            progress=progress,
        )
    assert str(result.digest) == image.manifest.digest
    assert set(progress.statuses.values()) == {"Layer already exists"}


async def test_layers_go_in_parallel(registry: DockyardServer, fault_proxy, tmp_path: Path):
    image = make_image([1 << 20] * 6, seed=29)
    proxy: FaultProxy = fault_proxy(registry.url)
    await _push(proxy.addr, "faults/parallel", image, tmp_path)
    assert proxy.most_inflight["upload"] >= 2, proxy.most_inflight
    async with RegistryClient(proxy.addr) as client:
        await pull_image(client, "faults/parallel", "v1", tmp_path / "sink")
    assert proxy.most_inflight["blob"] >= 2, proxy.most_inflight
