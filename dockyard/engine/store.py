"""The local image store: blobs, unpacked layers, images and tags under one root directory.

    ROOT/blobs/sha256/<hex>      content-addressed: image configs, layer blobs as received
    ROOT/layers/<hex>/diff/      a layer unpacked in overlayfs form, named by its diff ID
    ROOT/layers/<hex>/layer.json its size and the blobs known to hold it
    ROOT/images/<hex>.json       one image (ID = sha256 of its config): parent, when added
    ROOT/tags.json               "repository:tag" → image ID
    ROOT/containers/<hex>/       see containers.py

Several dockyard processes may use one root at once. Content appears by atomic rename (a
layer is unpacked in ROOT/tmp and renamed into place; a second unpacker of the same layer
just discards its copy). Metadata changes happen under an exclusive flock on ROOT/lock.
Anything that creates layers not yet referenced by an image holds ROOT/gc.lock shared, and
layer garbage collection runs only when it can take that lock exclusively.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from dockyard.engine.fsutil import file_lock, read_json, remove_tree, write_atomic, write_json
from dockyard.engine.layers import LayerResult, Limits, apply_layer
from dockyard.oci.digest import Digest, InvalidDigest
from dockyard.oci.image import ImageConfig
from dockyard.oci.reference import InvalidReference, normalize_tag


class StoreError(Exception):
    """A request the store cannot satisfy (unknown image, conflict, …); message is user-facing."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    pass


def default_root() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/dockyard/engine")
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "dockyard" / "engine"


def hex_of(digest: str) -> str:
    try:
        parsed = Digest.parse(digest)
    except InvalidDigest as exc:
        raise StoreError(str(exc)) from exc
    if parsed.algorithm != "sha256":
        raise StoreError(f"unsupported digest algorithm in {digest}")
    return parsed.encoded


@dataclass(frozen=True, slots=True)
class ImageRecord:
    id: str
    parent: str | None
    added: float
    repo_digests: tuple[str, ...] = ()
    comment: str = ""


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.blobs = self.root / "blobs" / "sha256"
        self.layers = self.root / "layers"
        self.images_dir = self.root / "images"
        self.containers_dir = self.root / "containers"
        self.tmp = self.root / "tmp"
        self.runc_root = self.root / "runc"
        self.empty_dir = self.root / "empty"
        self.tags_file = self.root / "tags.json"
        for path in (
            self.root,
            self.blobs,
            self.layers,
            self.images_dir,
            self.containers_dir,
            self.tmp,
            self.runc_root,
            self.empty_dir,
        ):
            path.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(PermissionError):
            os.chmod(self.root, 0o700)

    # --- locks and scratch space ------------------------------------------------------------

    def lock(self) -> contextlib.AbstractContextManager[bool]:
        return file_lock(self.root / "lock")

    def creating_layers(self) -> contextlib.AbstractContextManager[bool]:
        """Held while making layers an image does not reference yet (keeps GC off them)."""
        return file_lock(self.root / "gc.lock", shared=True)

    @contextlib.contextmanager
    def scratch_dir(self, prefix: str = "tmp-") -> Iterator[Path]:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=self.tmp))
        try:
            yield path
        finally:
            remove_tree(path)

    # --- blobs ------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.blobs / hex_of(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def put_blob(self, data: bytes) -> str:
        digest = str(Digest.of(data))
        path = self.blob_path(digest)
        if not path.exists():
            write_atomic(path, data)
        return digest

    def adopt_blob(self, tmp_file: Path, digest: str) -> None:
        """Move a finished temporary file (whose digest the caller computed) into place."""
        os.replace(tmp_file, self.blob_path(digest))

    def read_blob(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    # --- layers -----------------------------------------------------------------------------

    def layer_path(self, diff_id: str) -> Path:
        return self.layers / hex_of(diff_id)

    def layer_diff(self, diff_id: str) -> Path:
        return self.layer_path(diff_id) / "diff"

    def has_layer(self, diff_id: str) -> bool:
        return (self.layer_path(diff_id) / "layer.json").exists()

    def layer_info(self, diff_id: str) -> dict[str, Any]:
        info = read_json(self.layer_path(diff_id) / "layer.json")
        if info is None:
            raise NotFound(f"layer {diff_id} not found")
        return info

    def add_layer(
        self,
        source: BinaryIO,
        limits: Limits | None = None,
        *,
        keep_blob: bool = True,
        expect_diff_id: str | None = None,
    ) -> LayerResult:
        """Unpack a layer tar (any supported compression) into the store; idempotent.

        Call inside `creating_layers()`. With `keep_blob` the bytes as received are kept as a
        blob, so saving or pushing the layer later reproduces its digest exactly.
        """
        with self.scratch_dir("layer-") as work:
            diff = work / "diff"
            diff.mkdir(mode=0o755)
            blob_tmp = work / "blob"
            with open(blob_tmp, "wb") if keep_blob else contextlib.nullcontext() as blob_out:
                result = apply_layer(source, diff, limits, copy_blob_to=blob_out)
            if expect_diff_id and result.diff_id != expect_diff_id:
                raise StoreError(
                    f"layer content has diff ID {result.diff_id}, expected {expect_diff_id}"
                )
            blobs: list[dict[str, Any]] = []
            if keep_blob:
                if not self.has_blob(result.blob_digest):
                    self.adopt_blob(blob_tmp, result.blob_digest)
                blobs.append(
                    {
                        "digest": result.blob_digest,
                        "mediaType": result.media_type,
                        "size": result.blob_size,
                    }
                )
            altered = any(w.startswith("stripped set-id") for w in result.warnings)
            self._install_layer(work, result.diff_id, result.size, blobs, altered=altered)
        return result

    def adopt_layer_dir(self, source: Path, diff_id: str, size: int) -> None:
        """Move `source` (overlay form, on the store's filesystem) in as layer `diff_id`."""
        with self.scratch_dir("layer-") as work:
            os.rename(source, work / "diff")
            self._install_layer(work, diff_id, size, [])

    def add_layer_dir(self, work: Path, diff_id: str, size: int) -> None:
        """Install `work/diff` (already unpacked in overlay form) as layer `diff_id`."""
        self._install_layer(work, diff_id, size, [])

    def _install_layer(
        self,
        work: Path,
        diff_id: str,
        size: int,
        blobs: list[dict[str, Any]],
        *,
        altered: bool = False,
    ) -> None:
        target = self.layer_path(diff_id)
        if self.has_layer(diff_id):
            if not altered and self.layer_info(diff_id).get("altered"):
                self._replace_altered_layer(work, diff_id, size, blobs)
            self._merge_layer_blobs(diff_id, blobs)
            return
        info = {"diff_id": diff_id, "size": size, "blobs": blobs, "created": time.time()}
        if altered:
            info["altered"] = True  # set-id bits stripped: not the tar's exact content
        write_json(work / "layer.json", info)
        remove_tree(work / "blob")
        os.chmod(work, 0o700)
        try:
            os.rename(work, target)
        except OSError:
            if not self.has_layer(diff_id):
                raise
            self._merge_layer_blobs(diff_id, blobs)

    def _replace_altered_layer(
        self, work: Path, diff_id: str, size: int, blobs: list[dict[str, Any]]
    ) -> None:
        """A faithful unpacking replaces one that had set-id bits stripped (unless in use)."""
        from dockyard.engine.containers import Containers

        with self.lock():
            containers = Containers(self)
            for container in containers.all():
                running = containers.state(container).get("status") in ("running", "starting")
                if running and diff_id in container.diff_ids:
                    return
            info = self.layer_info(diff_id)
            info.update(size=size, altered=False, blobs=info.get("blobs", []))
            write_json(work / "layer.json", info)
            remove_tree(work / "blob")
            target = self.layer_path(diff_id)
            trash = self.tmp / f"trash-{target.name}-{os.getpid()}"
            os.rename(target, trash)
            os.chmod(work, 0o700)
            os.rename(work, target)
        remove_tree(trash)

    def _merge_layer_blobs(self, diff_id: str, blobs: list[dict[str, Any]]) -> None:
        if not blobs:
            return
        with self.lock():
            path = self.layer_path(diff_id) / "layer.json"
            info = read_json(path) or {}
            known = {b["digest"] for b in info.get("blobs", [])}
            new = [b for b in blobs if b["digest"] not in known]
            if new:
                info["blobs"] = [*info.get("blobs", []), *new]
                write_json(path, info)

    def record_layer_blob(self, diff_id: str, blob: dict[str, Any]) -> None:
        self._merge_layer_blobs(diff_id, [blob])

    # --- images -----------------------------------------------------------------------------

    def _record_path(self, image_id: str) -> Path:
        return self.images_dir / f"{hex_of(image_id)}.json"

    def has_image(self, image_id: str) -> bool:
        return self._record_path(image_id).exists()

    def image_config(self, image_id: str) -> ImageConfig:
        return ImageConfig.parse(self.read_blob(image_id))

    def image_record(self, image_id: str) -> ImageRecord:
        raw = read_json(self._record_path(image_id))
        if raw is None:
            raise NotFound(f"No such image: {image_id}")
        return ImageRecord(
            id=raw["id"],
            parent=raw.get("parent"),
            added=raw.get("added", 0.0),
            repo_digests=tuple(raw.get("repo_digests", ())),
            comment=raw.get("comment", ""),
        )

    def image_ids(self) -> list[str]:
        return sorted(
            f"sha256:{p.name[:-5]}"
            for p in self.images_dir.iterdir()
            if p.name.endswith(".json") and not p.name.startswith(".")
        )

    def image_size(self, config: ImageConfig) -> int:
        total = 0
        for diff_id in config.diff_ids:
            with contextlib.suppress(NotFound):
                total += int(self.layer_info(diff_id).get("size", 0))
        return total

    def put_image(
        self,
        config_bytes: bytes,
        *,
        parent: str | None = None,
        tags: list[str] | tuple[str, ...] = (),
        repo_digests: tuple[str, ...] = (),
    ) -> str:
        """Register an image whose layers are already in the store; returns its ID."""
        config = ImageConfig.parse(config_bytes)
        image_id = config.id
        with self.lock():
            missing = [d for d in config.diff_ids if not self.has_layer(d)]
            if missing:
                raise StoreError(f"image {image_id} needs layers not in the store: {missing}")
            self.put_blob(config_bytes)
            record_path = self._record_path(image_id)
            existing = read_json(record_path)
            if existing is None:
                write_json(
                    record_path,
                    {
                        "id": image_id,
                        "parent": parent,
                        "added": time.time(),
                        "repo_digests": list(repo_digests),
                    },
                )
            elif repo_digests:
                merged = sorted(set(existing.get("repo_digests", [])) | set(repo_digests))
                if merged != existing.get("repo_digests"):
                    existing["repo_digests"] = merged
                    write_json(record_path, existing)
            if tags:
                table = self._read_tags()
                for tag in tags:
                    table[normalize_tag(tag)] = image_id
                self._write_tags(table)
        return image_id

    # --- tags -------------------------------------------------------------------------------

    def _read_tags(self) -> dict[str, str]:
        return dict(read_json(self.tags_file, {}))

    def _write_tags(self, table: dict[str, str]) -> None:
        write_atomic(self.tags_file, json.dumps(table, indent=1, sort_keys=True).encode())

    def tags(self) -> dict[str, str]:
        return self._read_tags()

    def tags_for(self, image_id: str) -> list[str]:
        return sorted(tag for tag, target in self._read_tags().items() if target == image_id)

    def tag(self, image_id: str, name: str) -> str:
        try:
            tag = normalize_tag(name)
        except InvalidReference as exc:
            raise StoreError(str(exc)) from exc
        with self.lock():
            if not self.has_image(image_id):
                raise NotFound(f"No such image: {image_id}")
            table = self._read_tags()
            table[tag] = image_id
            self._write_tags(table)
        return tag

    def untag(self, name: str) -> str | None:
        """Remove a tag (caller holds the lock); returns the image it pointed at."""
        table = self._read_tags()
        image_id = table.pop(normalize_tag(name), None)
        if image_id is not None:
            self._write_tags(table)
        return image_id

    # --- lookup -----------------------------------------------------------------------------

    def resolve_image(self, text: str) -> str:
        """An image ID from a name (`busybox`, `alice/web:v1`), a full ID or a unique prefix."""
        candidate = text[7:] if text.startswith("sha256:") else text
        if 1 <= len(candidate) <= 64 and all(c in "0123456789abcdef" for c in candidate):
            if len(candidate) == 64 and self.has_image(f"sha256:{candidate}"):
                return f"sha256:{candidate}"
            if not text.startswith("sha256:") or len(candidate) < 64:
                tag_hit = None
                with contextlib.suppress(InvalidReference):
                    tag_hit = self._read_tags().get(normalize_tag(text))
                if tag_hit:
                    return tag_hit
                matches = [i for i in self.image_ids() if i[7:].startswith(candidate)]
                if len(matches) == 1:
                    return matches[0]
                if len(matches) > 1:
                    raise StoreError(f"ambiguous image ID prefix {text!r}")
            raise NotFound(f"No such image: {text}")
        try:
            tag = normalize_tag(text)
        except InvalidReference as exc:
            raise NotFound(f"No such image: {text} ({exc})") from None
        image_id = self._read_tags().get(tag)
        if image_id is None:
            raise NotFound(f"No such image: {tag}")
        return image_id

    def children(self, image_id: str) -> list[str]:
        return [i for i in self.image_ids() if self._safe_parent(i) == image_id]

    def _safe_parent(self, image_id: str) -> str | None:
        try:
            return self.image_record(image_id).parent
        except NotFound:
            return None

    # --- deletion and garbage collection ----------------------------------------------------

    def delete_image_record(self, image_id: str) -> None:
        """Drop an image (caller holds the lock and checked it is unused)."""
        remove_tree(self._record_path(image_id))
        remove_tree(self.blob_path(image_id))

    def referenced_layers(self) -> set[str]:
        from dockyard.engine.containers import container_layer_refs

        used: set[str] = set()
        for image_id in self.image_ids():
            with contextlib.suppress(NotFound, ValueError):
                used.update(self.image_config(image_id).diff_ids)
        used.update(container_layer_refs(self))
        return used

    def collect_layers(self) -> int:
        """Delete layers no image or container uses; returns bytes freed (0 if busy)."""
        freed = 0
        with file_lock(self.root / "gc.lock", blocking=False) as got:
            if not got:
                return 0
            doomed: list[Path] = []
            with self.lock():
                used = {hex_of(d) for d in self.referenced_layers()}
                for path in self.layers.iterdir():
                    if path.name in used or path.name.startswith("."):
                        continue
                    info = read_json(path / "layer.json", {}) or {}
                    freed += int(info.get("size", 0))
                    for blob in info.get("blobs", []):
                        with contextlib.suppress(StoreError):
                            remove_tree(self.blob_path(blob["digest"]))
                    trash = self.tmp / f"trash-{path.name}-{os.getpid()}"
                    os.rename(path, trash)
                    doomed.append(trash)
            for trash in doomed:
                remove_tree(trash)
        return freed
