"""`save` and `load`: image tarballs in docker-archive and OCI image layout form.

`save` writes the docker 25+ layout, which is both at once: an OCI image layout (oci-layout,
index.json, blobs/sha256/…) plus docker's manifest.json and repositories, so every docker
version and every OCI tool reads it. Layers are uncompressed there, as `docker save` writes
them; `--format oci` writes a plain OCI layout with gzip (isal) layers instead.

`load` reads both, including what old and new `docker save` write (manifest.json with
`<id>/layer.tar` or `blobs/sha256/<hex>` paths, layers plain or compressed).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from dockyard.engine.fsutil import clean_relative
from dockyard.engine.layers import (
    CHUNK,
    LAYER_TAR,
    LAYER_TAR_GZIP,
    Limits,
    media_type_for,
    write_layer_tar,
)
from dockyard.engine.store import Store, StoreError
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest, InvalidDigest
from dockyard.oci.image import ImageConfig, host_architecture
from dockyard.oci.reference import InvalidReference, normalize_tag, parse_reference

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MAX_JSON = 16 << 20


class ArchiveError(StoreError):
    """The archive is not a docker-archive or OCI layout this store can load."""


# --- save -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Blob:
    digest: str
    size: int
    media_type: str
    path: Path | None = None
    data: bytes | None = None


@dataclass(slots=True)
class _SaveImage:
    image_id: str
    config: bytes
    tags: list[str] = field(default_factory=list)
    layers: list[_Blob] = field(default_factory=list)


def _hash_copy(source: BinaryIO, target: BinaryIO) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    while chunk := source.read(CHUNK):
        hasher.update(chunk)
        target.write(chunk)
        size += len(chunk)
    return f"sha256:{hasher.hexdigest()}", size


class _Hashing:
    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self.sink.write(data)


def layer_tar_file(store: Store, diff_id: str, scratch: Path) -> Path:
    """A file holding the uncompressed layer tar, whose sha256 is `diff_id`."""
    info = store.layer_info(diff_id)
    for blob in info.get("blobs", []):
        if blob["digest"] == diff_id and store.has_blob(diff_id):
            return store.blob_path(diff_id)
    target = scratch / f"{diff_id[7:]}.tar"
    if target.exists():
        return target
    for blob in info.get("blobs", []):
        if store.has_blob(blob["digest"]) and blob["mediaType"] != LAYER_TAR:
            from dockyard.engine.layers import _CountingReader, _decompressor, _sniff

            with open(store.blob_path(blob["digest"]), "rb") as raw_file:
                head = _sniff(raw_file)
                stream, _ = _decompressor(_CountingReader(raw_file, head, None), head)
                with open(target, "wb") as out:
                    digest, _ = _hash_copy(stream, out)
            if digest == diff_id:
                return target
    with open(target, "wb") as out:
        writer = _Hashing(out)
        write_layer_tar(store.layer_diff(diff_id), writer)  # type: ignore[arg-type]
    digest = f"sha256:{writer.hasher.hexdigest()}"
    if digest != diff_id:
        raise StoreError(
            f"layer {diff_id} no longer reproduces its diff ID (got {digest}); the unpacked "
            "layer was changed or holds content a layer tar cannot carry"
        )
    return target


def gzip_layer_blob(store: Store, diff_id: str, scratch: Path) -> _Blob:
    """The layer as a gzip blob: the one received if any, else compressed now with isal."""
    info = store.layer_info(diff_id)
    for blob in info.get("blobs", []):
        if blob["mediaType"] in (LAYER_TAR_GZIP, mt_docker_gzip()) and store.has_blob(
            blob["digest"]
        ):
            return _Blob(
                blob["digest"], blob["size"], LAYER_TAR_GZIP, store.blob_path(blob["digest"])
            )
    from isal import igzip

    plain = layer_tar_file(store, diff_id, scratch)
    out_path = scratch / f"{diff_id[7:]}.tar.gz"
    with open(out_path, "wb") as out:
        hashing = _Hashing(out)
        with (
            open(plain, "rb") as source,
            igzip.IGzipFile(fileobj=hashing, mode="wb", compresslevel=1, mtime=0) as gz,  # type: ignore[arg-type]
        ):
            shutil.copyfileobj(source, gz, CHUNK)
    digest = f"sha256:{hashing.hasher.hexdigest()}"
    if not store.has_blob(digest):
        kept = scratch / f"{diff_id[7:]}.keep"
        shutil.copyfile(out_path, kept)
        store.adopt_blob(kept, digest)
    store.record_layer_blob(
        diff_id, {"digest": digest, "mediaType": LAYER_TAR_GZIP, "size": hashing.size}
    )
    return _Blob(digest, hashing.size, LAYER_TAR_GZIP, store.blob_path(digest))


def mt_docker_gzip() -> str:
    return media_type_for(LAYER_TAR_GZIP, docker=True)


def _collect(store: Store, refs: list[str]) -> list[_SaveImage]:
    images: dict[str, _SaveImage] = {}
    for ref in refs:
        image_id = store.resolve_image(ref)
        image = images.get(image_id)
        if image is None:
            image = images[image_id] = _SaveImage(image_id, store.read_blob(image_id))
        candidate = ref[7:] if ref.startswith("sha256:") else ref
        is_id = image_id[7:].startswith(candidate) and not _is_tag(store, ref)
        if not is_id:
            tag = normalize_tag(ref)
            if tag not in image.tags:
                image.tags.append(tag)
    return list(images.values())


def _is_tag(store: Store, ref: str) -> bool:
    try:
        return normalize_tag(ref) in store.tags()
    except InvalidReference:
        return False


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def _add_file(archive: tarfile.TarFile, name: str, path: Path, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    with open(path, "rb") as handle:
        archive.addfile(info, handle)


def _add_dir(archive: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    archive.addfile(info)


def save(store: Store, refs: list[str], out: BinaryIO, *, fmt: str = "docker") -> None:
    """Write the images `refs` name as one tarball to `out` (docker-archive or OCI layout)."""
    if fmt not in ("docker", "oci"):
        raise StoreError(f"unknown archive format {fmt!r} (use docker or oci)")
    images = _collect(store, refs)
    with store.scratch_dir("save-") as scratch:
        blobs: dict[str, _Blob] = {}
        for image in images:
            config = ImageConfig.parse(image.config)
            for diff_id in config.diff_ids:
                if fmt == "oci":
                    blob = gzip_layer_blob(store, diff_id, scratch)
                else:
                    path = layer_tar_file(store, diff_id, scratch)
                    blob = _Blob(diff_id, path.stat().st_size, LAYER_TAR, path)
                blobs.setdefault(blob.digest, blob)
                image.layers.append(blob)
            blobs.setdefault(
                image.image_id,
                _Blob(image.image_id, len(image.config), OCI_CONFIG, data=image.config),
            )
        index_entries: list[dict[str, Any]] = []
        docker_manifest: list[dict[str, Any]] = []
        repositories: dict[str, dict[str, str]] = {}
        for image in images:
            manifest = {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "config": {
                    "mediaType": OCI_CONFIG,
                    "digest": image.image_id,
                    "size": len(image.config),
                },
                "layers": [
                    {"mediaType": b.media_type, "digest": b.digest, "size": b.size}
                    for b in image.layers
                ],
            }
            data = json.dumps(manifest, indent=None, separators=(",", ":")).encode()
            digest = str(Digest.of(data))
            blobs.setdefault(digest, _Blob(digest, len(data), mt.OCI_MANIFEST, data=data))
            descriptor = {"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": len(data)}
            for tag in image.tags or [None]:
                entry = dict(descriptor)
                if tag:
                    ref = parse_reference(tag)
                    entry["annotations"] = {
                        "io.containerd.image.name": f"{ref.full_repository}:{ref.tag}",
                        "org.opencontainers.image.ref.name": ref.tag or "latest",
                    }
                    repository, _, tag_name = tag.rpartition(":")
                    if image.layers:
                        top = image.layers[-1].digest[7:]
                        repositories.setdefault(repository, {})[tag_name] = top
                index_entries.append(entry)
            docker_manifest.append(
                {
                    "Config": f"blobs/sha256/{image.image_id[7:]}",
                    "RepoTags": image.tags or None,
                    "Layers": [f"blobs/sha256/{b.digest[7:]}" for b in image.layers],
                }
            )
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": index_entries}
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as archive:
            _add_dir(archive, "blobs/")
            _add_dir(archive, "blobs/sha256/")
            for blob in sorted(blobs.values(), key=lambda b: b.digest):
                name = f"blobs/sha256/{blob.digest[7:]}"
                if blob.data is not None:
                    _add_bytes(archive, name, blob.data)
                else:
                    assert blob.path is not None
                    _add_file(archive, name, blob.path, blob.size)
            _add_bytes(archive, "index.json", json.dumps(index).encode())
            if fmt == "docker":
                _add_bytes(archive, "manifest.json", json.dumps(docker_manifest).encode())
                if repositories:
                    _add_bytes(archive, "repositories", json.dumps(repositories).encode())
            _add_bytes(archive, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')


# --- load -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _LoadImage:
    config: bytes
    layers: list[str]  # member names in the archive
    layer_digests: list[str | None]
    tags: list[str]


class _Archive:
    def __init__(self, path: Path) -> None:
        try:
            self.tar = tarfile.open(path, mode="r:")  # noqa: SIM115 - closed by close()
        except tarfile.TarError as exc:
            raise ArchiveError(f"not an image archive (tar): {exc}") from exc
        self.members = {}
        for member in self.tar.getmembers():
            self.members[clean_relative(member.name)] = member

    def close(self) -> None:
        self.tar.close()

    def has(self, name: str) -> bool:
        return clean_relative(name) in self.members

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        member = self.members.get(clean_relative(name))
        if member is None:
            raise ArchiveError(f"archive lacks {name!r}")
        try:
            handle = self.tar.extractfile(member)
        except (tarfile.TarError, KeyError) as exc:
            raise ArchiveError(f"cannot read {name!r} from the archive: {exc}") from exc
        if handle is None:
            raise ArchiveError(f"{name!r} in the archive is not a file")
        with handle:
            yield handle  # type: ignore[misc]

    def read(self, name: str, limit: int = MAX_JSON) -> bytes:
        with self.open(name) as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise ArchiveError(f"{name!r} is larger than {limit} bytes")
        return data

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArchiveError(f"{name!r} is not valid JSON: {exc}") from exc


def _spool(source: BinaryIO, target: Path, limits: Limits) -> None:
    """Copy `source` to `target`, decompressing it if it is compressed."""
    from dockyard.engine.layers import _CountingReader, _decompressor, _sniff

    head = _sniff(source)
    stream, _ = _decompressor(_CountingReader(source, head, None), head)
    total = 0
    with open(target, "wb") as out:
        while chunk := stream.read(CHUNK):
            total += len(chunk)
            if total > limits.max_bytes:
                raise ArchiveError(f"archive is larger than {limits.max_bytes} bytes (the limit)")
            out.write(chunk)


def _blob_name(digest: str) -> str:
    try:
        parsed = Digest.parse(digest)
    except InvalidDigest as exc:
        raise ArchiveError(str(exc)) from exc
    return f"blobs/{parsed.algorithm}/{parsed.encoded}"


def _docker_images(archive: _Archive) -> list[_LoadImage]:
    entries = archive.json("manifest.json")
    if not isinstance(entries, list):
        raise ArchiveError("manifest.json must be a list")
    images = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise ArchiveError("manifest.json entries need a Config path")
        layers = entry.get("Layers") or []
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise ArchiveError("manifest.json Layers must be a list of paths")
        tags = [t for t in entry.get("RepoTags") or [] if isinstance(t, str)]
        images.append(_LoadImage(archive.read(entry["Config"]), layers, [None] * len(layers), tags))
    return images


def _pick_manifest(archive: _Archive, descriptor: dict[str, Any], depth: int = 0) -> dict | None:
    if depth > 4:
        raise ArchiveError("index nesting too deep")
    media_type = descriptor.get("mediaType")
    body = json.loads(archive.read(_blob_name(descriptor["digest"])))
    media_type = media_type or body.get("mediaType")
    if media_type in mt.INDEXES or "manifests" in body:
        children = [m for m in body.get("manifests", []) if isinstance(m, dict)]
        wanted = ("linux", host_architecture())
        for child in children:
            platform = child.get("platform") or {}
            if (platform.get("os"), platform.get("architecture")) == wanted:
                return _pick_manifest(archive, child, depth + 1)
        for child in children:
            if (child.get("platform") or {}).get("architecture") != "unknown":
                return _pick_manifest(archive, child, depth + 1)
        return None
    if media_type not in mt.IMAGE_MANIFESTS and "config" not in body:
        return None
    return body


def _oci_images(archive: _Archive) -> list[_LoadImage]:
    index = archive.json("index.json")
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list):
        raise ArchiveError("index.json lacks a manifests list")
    images: dict[str, _LoadImage] = {}
    for descriptor in manifests:
        if not isinstance(descriptor, dict) or not isinstance(descriptor.get("digest"), str):
            continue
        manifest = _pick_manifest(archive, descriptor)
        if manifest is None:
            continue
        config_digest = manifest["config"]["digest"]
        config = archive.read(_blob_name(config_digest))
        if str(Digest.of(config)) != config_digest:
            raise ArchiveError(f"config blob does not match its digest {config_digest}")
        layers = manifest.get("layers") or []
        image = images.get(config_digest)
        if image is None:
            image = images[config_digest] = _LoadImage(
                config,
                [_blob_name(layer["digest"]) for layer in layers],
                [layer["digest"] for layer in layers],
                [],
            )
        annotations = descriptor.get("annotations") or {}
        name = annotations.get("io.containerd.image.name")
        ref_name = annotations.get("org.opencontainers.image.ref.name")
        if not name and ref_name and ("/" in ref_name or ":" in ref_name):
            name = ref_name
        if name:
            with contextlib.suppress(InvalidReference):
                tag = normalize_tag(name)
                if tag not in image.tags:
                    image.tags.append(tag)
    return list(images.values())


def load(store: Store, source: BinaryIO | Path, *, limits: Limits | None = None) -> list[str]:
    """Load every image in the archive; returns docker's "Loaded image…" lines."""
    limits = limits or Limits.from_env()
    lines: list[str] = []
    with store.creating_layers(), store.scratch_dir("load-") as scratch:
        path = scratch / "archive.tar"
        if isinstance(source, Path):
            with open(source, "rb") as handle:
                head = handle.read(6)
            if head[:2] == b"\x1f\x8b" or head[:4] == b"\x28\xb5\x2f\xfd" or head[:3] == b"BZh":
                with open(source, "rb") as handle:
                    _spool(handle, path, limits)
            else:
                path = source
        else:
            _spool(source, path, limits)
        archive = _Archive(path)
        try:
            if archive.has("manifest.json"):
                images = _docker_images(archive)
            elif archive.has("index.json"):
                images = _oci_images(archive)
            else:
                raise ArchiveError(
                    "not an image archive: it has neither manifest.json nor index.json"
                )
            if not images:
                raise ArchiveError("the archive holds no image")
            for image in images:
                lines += _load_image(store, archive, image, limits)
        finally:
            archive.close()
    return lines


def _load_image(store: Store, archive: _Archive, image: _LoadImage, limits: Limits) -> list[str]:
    try:
        config = ImageConfig.parse(image.config)
    except ValueError as exc:
        raise ArchiveError(f"bad image config: {exc}") from exc
    diff_ids = config.diff_ids
    if len(diff_ids) != len(image.layers):
        raise ArchiveError(
            f"image {config.id} lists {len(diff_ids)} diff IDs but the archive has "
            f"{len(image.layers)} layers for it"
        )
    for diff_id, name, digest in zip(diff_ids, image.layers, image.layer_digests, strict=True):
        if store.has_layer(diff_id):
            continue
        with archive.open(name) as handle:
            result = store.add_layer(handle, limits, keep_blob=True, expect_diff_id=diff_id)
        if digest and result.blob_digest != digest:
            raise ArchiveError(f"layer blob {name} does not match its digest {digest}")
    image_id = store.put_image(image.config, tags=image.tags)
    if image.tags:
        return [f"Loaded image: {tag}" for tag in image.tags]
    return [f"Loaded image ID: {image_id}"]
