"""Between the registry client and the local store: push an image from it, pull one into it.

Push builds a Docker v2 schema 2 manifest from the stored config and the layers' blobs (a
layer with no blob kept is compressed once, with isal, and the blob kept). Pull downloads into
a scratch directory inside the store, where every blob is verified before anything else happens;
only then are layers unpacked (in parallel) through the engine's layer code and the image
registered. The registry repositories a blob is known to live in are remembered under
ROOT/distribution/ so a later push to another repository of that registry can mount it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from dockyard.client.credentials import CredentialStore
from dockyard.client.errors import ClientError
from dockyard.client.progress import Progress, short_id
from dockyard.client.registry import RegistryClient
from dockyard.client.transfer import Platform, PulledImage, pull_image, push_image
from dockyard.engine.archive import gzip_layer_blob, mt_docker_gzip
from dockyard.engine.fsutil import write_atomic
from dockyard.engine.store import Store, hex_of
from dockyard.oci import mediatypes as mt
from dockyard.oci.image import ImageConfig
from dockyard.oci.manifest import Descriptor
from dockyard.oci.reference import DEFAULT_DOMAIN, Reference, parse_reference

DOCKER_CONFIG_MT = "application/vnd.docker.container.image.v1+json"
UNPACK_THREADS = 4


def registry_host(ref: Reference) -> str:
    """The host to talk to for a reference (Docker Hub's API host, or the configured default)."""
    if ref.domain == DEFAULT_DOMAIN:
        configured = os.environ.get("DOCKYARD_DEFAULT_REGISTRY", "").strip()
        if configured and configured != DEFAULT_DOMAIN:
            return configured
        return "registry-1.docker.io"
    return ref.domain


def credentials_key(ref: Reference) -> str:
    """The config.json `auths` host whose credentials serve this reference."""
    if ref.domain == DEFAULT_DOMAIN:
        configured = os.environ.get("DOCKYARD_DEFAULT_REGISTRY", "").strip()
        return configured or DEFAULT_DOMAIN
    return ref.domain


def open_client(
    host: str, credentials_host: str | None = None, insecure_registries: tuple[str, ...] = ()
) -> RegistryClient:
    """A client of `host` with the stored credentials (docker's config.json or its helpers)."""
    credentials = CredentialStore().get(credentials_host or host)
    return RegistryClient(host, credentials, insecure_registries=list(insecure_registries))


def client_for(ref: Reference, insecure_registries: tuple[str, ...] = ()) -> RegistryClient:
    """The client for the registry of `ref`: `async with client_for(ref) as client: …`."""
    return open_client(registry_host(ref), credentials_key(ref), insecure_registries)


# --- where blobs came from (for cross-repository mounts) --------------------------------------


def _sources_file(store: Store, digest: str) -> Path:
    return store.root / "distribution" / hex_of(digest)


def known_sources(store: Store, digest: str) -> list[str]:
    try:
        value = json.loads(_sources_file(store, digest).read_text())
    except (OSError, ValueError):
        return []
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def remember_source(store: Store, digest: str, host: str, repository: str) -> None:
    entry = f"{host}/{repository}"
    found = known_sources(store, digest)
    if entry in found:
        return
    path = _sources_file(store, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        write_atomic(path, json.dumps([entry, *found][:16]).encode())


# --- push ----------------------------------------------------------------------------------------


class StoreSource:
    """The `ContentSource` a push reads: blobs of the store, mounts known for this host."""

    def __init__(self, store: Store, host: str) -> None:
        self.store = store
        self.host = host
        self.paths: dict[str, Path] = {}

    def blob_path(self, digest: str) -> Path:
        return self.paths.get(digest) or self.store.blob_path(digest)

    def manifest(self, digest: str) -> tuple[bytes, str]:
        raise ClientError(f"the local store holds no manifest {digest}")

    def mount_sources(self, digest: str) -> list[str]:
        prefix = self.host + "/"
        return [s[len(prefix) :] for s in known_sources(self.store, digest) if s.startswith(prefix)]


def image_manifest(store: Store, image_id: str, source: StoreSource) -> bytes:
    """A Docker v2 schema 2 manifest for a stored image (layer blobs made where missing)."""
    config_bytes = store.read_blob(image_id)
    config = ImageConfig.parse(config_bytes)
    layers = []
    with store.scratch_dir("push-") as scratch:
        for diff_id in config.diff_ids:
            blob = gzip_layer_blob(store, diff_id, scratch)
            source.paths[blob.digest] = store.blob_path(blob.digest)
            layers.append({"mediaType": mt_docker_gzip(), "size": blob.size, "digest": blob.digest})
    body = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG_MT, "size": len(config_bytes), "digest": image_id},
        "layers": layers,
    }
    return json.dumps(body, indent=3).encode()


def tags_to_push(store: Store, ref: Reference) -> list[str]:
    """`repo:tag` keys of the store: the one named, or every tag of the repository."""
    if ref.tag:
        return [ref.tagged()]
    found = []
    for key in sorted(store.tags()):
        with contextlib.suppress(ValueError):
            other = parse_reference(key)
            if other.domain == ref.domain and other.path == ref.path:
                found.append(key)
    return found


@dataclass
class Pushed:
    tag: str
    digest: str
    size: int


async def push_from_store(
    store: Store, client: RegistryClient, ref: Reference, progress: Progress
) -> list[Pushed]:
    if ref.digest is not None:
        raise ClientError("cannot push a digest reference; push a tag")
    keys = tags_to_push(store, ref)
    if not keys:
        raise ClientError(f"An image does not exist locally with the tag: {ref.repository}")
    results = []
    for key in keys:
        tag = parse_reference(key).tag or "latest"
        image_id = store.resolve_image(key)
        progress.message(f"The push refers to repository [{ref.full_repository}]")
        source = StoreSource(store, client.host)
        manifest = image_manifest(store, image_id, source)
        result = await push_image(
            client, ref.path, tag, manifest, mt.DOCKER_MANIFEST, source, progress=progress
        )
        for digest in [image_id, *source.paths]:
            remember_source(store, digest, client.host, ref.path)
        store.put_image(
            store.read_blob(image_id), repo_digests=(f"{ref.repository}@{result.digest}",)
        )
        results.append(Pushed(tag, str(result.digest), result.size))
    return results


# --- pull ----------------------------------------------------------------------------------------


@dataclass
class PullOutcome:
    image_id: str
    digest: str
    tag: str | None
    new: bool


async def pull_into_store(
    store: Store,
    client: RegistryClient,
    ref: Reference,
    progress: Progress,
    *,
    platform: Platform | None = None,
    tag: str | None = None,
) -> PullOutcome:
    """Pull `ref` (or `tag` of its repository) and store it; every digest checked first."""
    if tag is None and ref.digest is None:
        tag = ref.tag or "latest"
    reference = tag or str(ref.digest)
    diff_ids: list[str] = []

    def have_layer(index: int, _descriptor: Descriptor, config_bytes: bytes) -> bool:
        if not diff_ids:
            diff_ids.extend(ImageConfig.parse(config_bytes).diff_ids)
        return index < len(diff_ids) and store.has_layer(diff_ids[index])

    with store.creating_layers(), store.scratch_dir("pull-") as sink:
        pulled = await pull_image(
            client,
            ref.path,
            reference,
            sink,
            platform=platform,
            skip_layer=have_layer,
            progress=progress,
        )
        config_bytes = pulled.config_bytes()
        config = ImageConfig.parse(config_bytes)
        if len(config.diff_ids) != len(pulled.layers):
            raise ClientError(
                f"{ref.repository}:{reference}: {len(pulled.layers)} layers but "
                f"{len(config.diff_ids)} diff IDs in the config"
            )
        existed = store.has_image(config.id)
        await _unpack_all(store, pulled, config.diff_ids, progress)
        for descriptor in pulled.layers:
            remember_source(store, str(descriptor.digest), client.host, ref.path)
        repository = ref.repository
        tags = [f"{repository}:{tag}"] if tag else []
        image_id = store.put_image(
            config_bytes, tags=tags, repo_digests=(f"{repository}@{pulled.digest}",)
        )
    return PullOutcome(image_id, str(pulled.digest), tag, not existed)


async def _unpack_all(
    store: Store, pulled: PulledImage, diff_ids: list[str], progress: Progress
) -> None:
    slots = asyncio.Semaphore(UNPACK_THREADS)

    async def one(path: Path | None, descriptor: Descriptor, diff_id: str) -> None:
        if path is None:
            return
        key = short_id(str(descriptor.digest))
        async with slots:
            progress.start(key, "Extracting", None)
            await asyncio.to_thread(_unpack, store, path, descriptor, diff_id)
        progress.finish(key, "Pull complete")

    tasks = [
        one(path, descriptor, diff_id)
        for path, descriptor, diff_id in zip(
            pulled.layer_paths, pulled.layers, diff_ids, strict=True
        )
    ]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _unpack(store: Store, path: Path, descriptor: Descriptor, diff_id: str) -> None:
    if store.has_layer(diff_id):
        return
    with open(path, "rb") as handle:
        store.add_layer(handle, keep_blob=False, expect_diff_id=diff_id)
    digest = str(descriptor.digest)
    if not store.has_blob(digest):
        store.adopt_blob(path, digest)
    store.record_layer_blob(
        diff_id, {"digest": digest, "mediaType": descriptor.media_type, "size": descriptor.size}
    )
