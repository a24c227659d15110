"""Push and pull whole images: blobs in parallel, manifests last (children before an index).

The caller supplies the local side: for push a `ContentSource` (a path per blob, the bytes of
index children, repositories of the same registry known to hold a blob); for pull a sink
directory that receives verified blobs named by their hex digest.
"""

from __future__ import annotations

import asyncio
import json
import platform as host_platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from dockyard.client.errors import ClientError, NotFoundError
from dockyard.client.progress import NoProgress, Progress, short_id
from dockyard.client.registry import ManifestResponse, RegistryClient
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest
from dockyard.oci.manifest import Descriptor, InvalidManifest, Manifest, parse_manifest

_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


class ContentSource(Protocol):
    def blob_path(self, digest: str) -> Path:
        """A file holding the blob (the caller guarantees its digest)."""
        ...

    def manifest(self, digest: str) -> tuple[bytes, str]:
        """Bytes and media type of a manifest an index refers to."""
        ...

    def mount_sources(self, digest: str) -> list[str]:
        """Repositories of this registry known to hold the blob (cross-mount candidates)."""
        ...


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ClientError(f"invalid platform {text!r}: use os/arch[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def host(cls) -> Platform:
        machine = host_platform.machine().lower()
        arch = _GO_ARCH.get(machine, machine)
        return cls("linux", arch, "v8" if arch == "arm64" else None)

    def matches(self, value: dict | None) -> bool:
        if not value:
            return False
        if value.get("os") != self.os or value.get("architecture") != self.architecture:
            return False
        if self.variant is None:
            return True
        variant = value.get("variant")
        return variant == self.variant or (variant is None and self.variant == "v8")

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


# --- push ------------------------------------------------------------------------------------


@dataclass
class PushResult:
    digest: Digest
    size: int
    statuses: dict[str, str] = field(default_factory=dict)


class _Pusher:
    def __init__(
        self, client: RegistryClient, repository: str, source: ContentSource, progress: Progress
    ) -> None:
        self.client = client
        self.repository = repository
        self.source = source
        self.progress = progress
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.statuses: dict[str, str] = {}

    def blob(self, descriptor: Descriptor) -> asyncio.Task[None]:
        digest = str(descriptor.digest)
        if digest not in self.tasks:
            self.tasks[digest] = asyncio.ensure_future(self._push_blob(descriptor))
        return self.tasks[digest]

    async def _push_blob(self, descriptor: Descriptor) -> None:
        digest, size = str(descriptor.digest), descriptor.size
        key = short_id(digest)
        async with self.client.slots:
            self.progress.start(key, "Preparing", size)
            if await self.client.blob_exists(self.repository, digest):
                return self._finish(key, "Layer already exists")
            location = None
            for source in self.source.mount_sources(digest):
                if source == self.repository:
                    continue
                mounted, location = await self.client.start_upload(
                    self.repository, mount=digest, source=source
                )
                if mounted:
                    return self._finish(key, f"Mounted from {source}")
                break  # the registry opened an ordinary upload instead: use it
            path = self.source.blob_path(digest)
            self.progress.start(key, "Pushing", size)
            await self.client.upload_blob(
                self.repository, digest, size, path, location=location, progress=self.progress
            )
            self._finish(key, "Pushed")

    def _finish(self, key: str, status: str) -> None:
        self.statuses[key] = status
        self.progress.finish(key, status)

    async def manifest(self, reference: str, data: bytes, media_type: str) -> Digest:
        try:
            parsed = parse_manifest(data, media_type)
        except InvalidManifest as exc:
            raise ClientError(f"cannot push {self.repository}:{reference}: {exc}") from None
        if parsed.manifests:
            children = []
            for child in parsed.manifests:
                child_data, child_type = self.source.manifest(str(child.digest))
                children.append(self.manifest(str(child.digest), child_data, child_type))
            await _gather(children)
        blobs = [self.blob(d) for d in parsed.blobs if d.distributable]
        await _gather(blobs)
        return await self.client.put_manifest(self.repository, reference, data, media_type)


async def _gather(awaitables: list) -> list:
    """Like asyncio.gather, but on the first failure cancel the rest and wait for them."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def push_image(
    client: RegistryClient,
    repository: str,
    reference: str,
    manifest: bytes,
    media_type: str,
    source: ContentSource,
    *,
    progress: Progress | None = None,
) -> PushResult:
    """Push an image manifest or an index (whole) and every blob it needs; returns its digest."""
    pusher = _Pusher(client, repository, source, progress or NoProgress())
    digest = await pusher.manifest(reference, manifest, media_type)
    return PushResult(digest, len(manifest), pusher.statuses)


# --- pull ------------------------------------------------------------------------------------


@dataclass
class PulledImage:
    repository: str
    reference: str
    manifest: ManifestResponse  # the image manifest
    index: ManifestResponse | None  # the index it was picked from, if any
    config: Descriptor
    layers: tuple[Descriptor, ...]
    config_path: Path
    layer_paths: list[Path | None]  # None where `skip_layer` said the caller has it

    @property
    def digest(self) -> Digest:
        """What `repo@digest` names: the index when pulled through one, else the manifest."""
        return (self.index or self.manifest).digest

    def config_bytes(self) -> bytes:
        return self.config_path.read_bytes()


SkipLayer = Callable[[int, Descriptor, bytes], bool]


def select_platform(index: Manifest, wanted: Platform, what: str) -> Descriptor:
    candidates = list(index.manifests)
    for descriptor in candidates:
        if wanted.matches(descriptor.platform):
            return descriptor
    if wanted.variant:
        loose = Platform(wanted.os, wanted.architecture)
        for descriptor in candidates:
            if loose.matches(descriptor.platform):
                return descriptor
    offered = sorted(
        {
            "/".join(str(p.get(k)) for k in ("os", "architecture", "variant") if p.get(k))
            for p in (d.platform for d in candidates)
            if p and p.get("os") != "unknown"
        }
    )
    raise NotFoundError(
        f"{what}: no manifest for platform {wanted} (the index has {', '.join(offered) or 'none'})"
    )


async def resolve_image_manifest(
    client: RegistryClient, repository: str, reference: str, platform: Platform | None
) -> tuple[ManifestResponse, ManifestResponse | None, Manifest]:
    """Fetch `reference`, descending through an index to the manifest for `platform`."""
    what = f"{repository}:{reference}" if ":" not in reference else f"{repository}@{reference}"
    top = await client.get_manifest(repository, reference)
    index = None
    response = top
    parsed = _parse(top, what)
    if parsed.manifests:
        index = top
        chosen = select_platform(parsed, platform or Platform.host(), what)
        response = await client.get_manifest(repository, str(chosen.digest))
        parsed = _parse(response, what)
        if parsed.manifests:
            raise ClientError(f"{what}: nested indexes are not supported")
    if parsed.media_type not in mt.IMAGE_MANIFESTS:
        raise ClientError(f"{what}: {parsed.media_type} is not an image manifest")
    return response, index, parsed


def _parse(response: ManifestResponse, what: str) -> Manifest:
    try:
        return parse_manifest(response.data, response.media_type or None)
    except InvalidManifest as exc:
        raise ClientError(f"{what}: invalid manifest: {exc}") from None


async def pull_image(
    client: RegistryClient,
    repository: str,
    reference: str,
    sink: Path,
    *,
    platform: Platform | None = None,
    skip_layer: SkipLayer | None = None,
    progress: Progress | None = None,
) -> PulledImage:
    """Download an image's config and layers, verified, into `sink/<hex>` (parallel, resumable)."""
    progress = progress or NoProgress()
    sink.mkdir(parents=True, exist_ok=True)
    response, index, parsed = await resolve_image_manifest(client, repository, reference, platform)
    config, layers = parsed.blobs[0], parsed.blobs[1:]
    progress.message(f"{reference}: Pulling from {repository}")
    config_path = await _fetch(client, repository, config, sink, NoProgress())
    config_bytes = config_path.read_bytes()
    try:
        body = json.loads(config_bytes)
        diff_ids = body.get("rootfs", {}).get("diff_ids")
    except (ValueError, AttributeError):
        body, diff_ids = {}, None
    if platform is not None and index is None and not platform.matches(body):
        found = Platform(str(body.get("os")), str(body.get("architecture")), body.get("variant"))
        raise NotFoundError(
            f"{repository}:{reference} is for {found}, which does not match platform {platform}"
        )
    if isinstance(diff_ids, list) and len(diff_ids) != len(layers):
        raise ClientError(
            f"{repository}:{reference}: the manifest has {len(layers)} layers but the "
            f"image config lists {len(diff_ids)} diff IDs"
        )

    async def one(i: int, layer: Descriptor) -> Path | None:
        key = short_id(str(layer.digest))
        if skip_layer is not None and skip_layer(i, layer, config_bytes):
            progress.finish(key, "Already exists")
            return None
        if not layer.distributable:
            raise ClientError(f"layer {layer.digest} is a foreign layer; not supported")
        async with client.slots:
            progress.start(key, "Downloading", layer.size)
            path = await _fetch(client, repository, layer, sink, progress)
        progress.finish(key, "Download complete")
        return path

    for layer in layers:
        progress.start(short_id(str(layer.digest)), "Waiting", layer.size)
    paths = await _gather([one(i, layer) for i, layer in enumerate(layers)])
    return PulledImage(
        repository, reference, response, index, config, tuple(layers), config_path, paths
    )


async def _fetch(
    client: RegistryClient, repository: str, descriptor: Descriptor, sink: Path, progress: Progress
) -> Path:
    digest = descriptor.digest
    dest = sink / digest.encoded
    if dest.exists() and dest.stat().st_size == descriptor.size:
        return dest  # the sink holds only verified blobs
    try:
        await client.download_blob(
            repository, str(digest), descriptor.size, dest, progress=progress
        )
    except NotFoundError:
        raise NotFoundError(
            f"{repository}: the manifest references blob {digest}, which the registry does not have"
        ) from None
    return dest


async def all_tags(client: RegistryClient, repository: str) -> list[str]:
    return sorted(await client.list_tags(repository))
