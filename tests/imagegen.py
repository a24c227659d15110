"""Build OCI test images locally, with no network: random layers, configs, manifests, indexes.

    layout = OCILayout(tmp_path / "oci")
    image = make_image([1 << 20, 4096], seed=1)       # two gzip layers of random files
    layout.add_image(image, tag="v1")
    index = make_index([make_image([2048], arch="amd64"), make_image([2048], arch="arm64")])
    layout.add_index(index, tag="multi")

`read_layout(path)` and `verify_layout(path)` read a layout back (after `skopeo copy … oci:`)
and re-hash every blob in it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

OCI_LAYOUT_VERSION = "1.0.0"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes
    annotations: dict[str, str] = field(default_factory=dict)
    diff_id: str | None = None  # layers: digest of the uncompressed tar

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: object) -> dict[str, object]:
        desc: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            desc["annotations"] = dict(self.annotations)
        desc.update(extra)
        return desc


@dataclass(frozen=True)
class Image:
    config: Blob
    layers: list[Blob]
    manifest: Blob
    arch: str
    os: str

    @property
    def blobs(self) -> list[Blob]:
        return [self.config, *self.layers]

    @property
    def platform(self) -> dict[str, str]:
        return {"architecture": self.arch, "os": self.os}


@dataclass(frozen=True)
class Index:
    images: list[Image]
    manifest: Blob


def make_layer(size: int, *, rng: random.Random, files: int = 3) -> tuple[bytes, str]:
    """A gzip tar of `files` random files totalling about `size` bytes; (blob, diff_id)."""
    files = max(1, min(files, size)) if size else 1
    sizes = [size // files] * files
    sizes[0] += size - sum(sizes)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directory = tarfile.TarInfo(f"data{rng.randrange(1 << 30):08x}")
        directory.type = tarfile.DIRTYPE
        directory.mode = 0o755
        directory.mtime = 1_700_000_000
        tar.addfile(directory)
        for number, file_size in enumerate(sizes):
            info = tarfile.TarInfo(f"{directory.name}/file{number}.bin")
            info.size = file_size
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(rng.randbytes(file_size)))
    tar_bytes = raw.getvalue()
    # mtime=0 and a fixed level keep the blob a pure function of the seed.
    compressed = gzip.compress(tar_bytes, compresslevel=1, mtime=0)
    return compressed, sha256_digest(tar_bytes)


def make_image(
    layer_sizes: list[int],
    *,
    seed: int = 0,
    arch: str = "amd64",
    os: str = "linux",
    annotations: dict[str, str] | None = None,
    base: Image | None = None,
) -> Image:
    """An OCI image of gzip layers of random content; same arguments, same digests.

    With `base`, the image starts with the base image's layers (shared blobs), then its own.
    """
    rng = random.Random(f"{seed}/{arch}/{os}/{layer_sizes}")
    layers: list[Blob] = list(base.layers) if base else []
    for size in layer_sizes:
        data, diff_id = make_layer(size, rng=rng)
        layers.append(Blob(MT_LAYER_GZIP, data, diff_id=diff_id))
    diff_ids = [layer.diff_id for layer in layers]
    config = Blob(
        MT_CONFIG,
        canonical_json(
            {
                "architecture": arch,
                "os": os,
                "created": "2024-01-01T00:00:00Z",
                "config": {"Env": ["PATH=/bin"], "Labels": {"seed": str(seed)}},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [{"created_by": f"imagegen layer {n}"} for n in range(len(layers))],
            }
        ),
    )
    body: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    if annotations:
        body["annotations"] = annotations
    manifest = Blob(MT_MANIFEST, json.dumps(body, indent=2).encode())
    return Image(config=config, layers=layers, manifest=manifest, arch=arch, os=os)


def make_index(images: list[Image]) -> Index:
    """An OCI image index of `images`, each entry with its platform."""
    body = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [image.manifest.descriptor(platform=image.platform) for image in images],
    }
    return Index(images=images, manifest=Blob(MT_INDEX, json.dumps(body, indent=2).encode()))


def make_multiarch(layer_sizes: list[int], *, seed: int = 0) -> Index:
    """The usual pair: linux/amd64 and linux/arm64, different layers, one index."""
    return make_index(
        [make_image(layer_sizes, seed=seed, arch=arch) for arch in ("amd64", "arm64")]
    )


class OCILayout:
    """Write an OCI image layout directory: oci-layout, index.json, blobs/sha256/<hex>."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text(
            json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION})
        )
        self.entries: list[dict[str, object]] = []
        self._write_index()

    def _write_index(self) -> None:
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": self.entries}
        (self.path / "index.json").write_text(json.dumps(index, indent=2))

    def add_blob(self, blob: Blob) -> None:
        target = self.path / "blobs" / "sha256" / blob.digest.split(":", 1)[1]
        if not target.exists():
            target.write_bytes(blob.data)

    def _tag(self, manifest: Blob, tag: str, **extra: object) -> None:
        self.entries = [e for e in self.entries if e.get("annotations", {}).get(REF_NAME) != tag]  # type: ignore[union-attr]
        self.entries.append(manifest.descriptor(annotations={REF_NAME: tag}, **extra))
        self._write_index()

    def add_image(self, image: Image, tag: str) -> Image:
        for blob in (*image.blobs, image.manifest):
            self.add_blob(blob)
        self._tag(image.manifest, tag)
        return image

    def add_index(self, index: Index, tag: str) -> Index:
        for image in index.images:
            for blob in (*image.blobs, image.manifest):
                self.add_blob(blob)
        self.add_blob(index.manifest)
        self._tag(index.manifest, tag)
        return index


# -- reading layouts back ----------------------------------------------------------------------


def read_layout(path: Path) -> dict[str, dict[str, object]]:
    """index.json's entries by tag (the org.opencontainers.image.ref.name annotation)."""
    index = json.loads((Path(path) / "index.json").read_text())
    tagged: dict[str, dict[str, object]] = {}
    for entry in index["manifests"]:
        tag = entry.get("annotations", {}).get(REF_NAME)
        if tag:
            tagged[tag] = entry
    return tagged


def layout_blob(path: Path, digest: str) -> bytes:
    algorithm, encoded = digest.split(":", 1)
    return (Path(path) / "blobs" / algorithm / encoded).read_bytes()


def verify_layout(path: Path) -> dict[str, str]:
    """Re-hash every blob of a layout; {digest: sha256 of the file}. Raises on a mismatch."""
    hashes: dict[str, str] = {}
    for blob in sorted((Path(path) / "blobs" / "sha256").iterdir()):
        actual = hashlib.sha256(blob.read_bytes()).hexdigest()
        if actual != blob.name:
            raise AssertionError(f"{blob}: content hashes to sha256:{actual}")
        hashes[f"sha256:{blob.name}"] = actual
    return hashes


def reachable(path: Path, digest: str) -> set[str]:
    """Every digest a manifest or index in the layout reaches, itself included."""
    seen: set[str] = set()
    pending = [digest]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            body = json.loads(layout_blob(path, current))
        except (ValueError, UnicodeDecodeError):
            continue  # a layer or config blob, not JSON we descend into
        if not isinstance(body, dict) or body.get("schemaVersion") != 2:
            continue  # an image config
        if "manifests" in body:
            pending.extend(entry["digest"] for entry in body["manifests"])
        if "config" in body and isinstance(body["config"], dict):
            pending.append(body["config"]["digest"])
        pending.extend(layer["digest"] for layer in body.get("layers", []))
    return seen
