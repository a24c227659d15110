"""Image operations on the store: import, list, remove, prune, history, inspect."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, BinaryIO

from dockyard.engine.changes import apply_change
from dockyard.engine.containers import Containers
from dockyard.engine.layers import Limits
from dockyard.engine.store import Conflict, NotFound, Store, StoreError
from dockyard.oci.image import (
    ImageConfig,
    encode,
    history_entry,
    new_config,
    now_rfc3339,
    parse_time,
)
from dockyard.oci.reference import InvalidReference, normalize_tag


@dataclass(frozen=True, slots=True)
class ImportResult:
    image_id: str
    warnings: list[str]


def import_tarball(
    store: Store,
    source: BinaryIO,
    *,
    tag: str | None = None,
    message: str = "",
    changes: list[str] | None = None,
    origin: str = "-",
    limits: Limits | None = None,
) -> ImportResult:
    """`docker import`: a root filesystem tarball becomes a one-layer image."""
    if tag:
        try:
            normalize_tag(tag)
        except InvalidReference as exc:
            raise StoreError(str(exc)) from exc
    config: dict[str, Any] = {}
    for change in changes or []:
        apply_change(config, change)
    limits = limits or Limits.from_env(allow_setuid=False)
    with store.creating_layers():
        layer = store.add_layer(source, limits, keep_blob=True)
        created = now_rfc3339()
        body = new_config(
            diff_ids=[layer.diff_id],
            history=[history_entry(created, comment=message or f"Imported from {origin}")],
            config=config,
            created=created,
        )
        image_id = store.put_image(encode(body), tags=[tag] if tag else [])
    return ImportResult(image_id, layer.warnings)


# --- listing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageRow:
    repository: str
    tag: str
    id: str
    created: float | None
    size: int


def list_images(store: Store, *, all_images: bool = False) -> list[ImageRow]:
    tags = store.tags()
    by_image: dict[str, list[str]] = {}
    for name, image_id in tags.items():
        by_image.setdefault(image_id, []).append(name)
    parents = set()
    for image_id in store.image_ids():
        with contextlib.suppress(NotFound):
            parent = store.image_record(image_id).parent
            if parent:
                parents.add(parent)
    rows = []
    for image_id in store.image_ids():
        try:
            config = store.image_config(image_id)
        except (NotFound, ValueError):
            continue
        names = sorted(by_image.get(image_id, []))
        if not names and image_id in parents and not all_images:
            continue  # an intermediate image (a build step); `-a` shows it
        created = parse_time(config.created)
        size = store.image_size(config)
        for name in names or ["<none>:<none>"]:
            repository, _, tag = name.rpartition(":")
            rows.append(ImageRow(repository, tag, image_id, created, size))
    rows.sort(key=lambda r: (-(r.created or 0), r.repository, r.tag))
    return rows


# --- removal --------------------------------------------------------------------------------


def _is_id_reference(store: Store, text: str, image_id: str) -> bool:
    candidate = text[7:] if text.startswith("sha256:") else text
    if text.startswith("sha256:") or len(candidate) == 64:
        return True
    with contextlib.suppress(InvalidReference):
        if normalize_tag(text) in store.tags():
            return False
    return image_id[7:].startswith(candidate)


def remove_images(store: Store, refs: list[str], *, force: bool = False) -> tuple[list[str], int]:
    """`docker rmi`: returns the Untagged/Deleted lines and the number of failures."""
    lines: list[str] = []
    errors = 0
    for ref in refs:
        try:
            lines += _remove_one(store, ref, force)
        except StoreError as exc:
            lines.append(f"Error response from daemon: {exc}")
            errors += 1
    store.collect_layers()
    return lines, errors


def _users(store: Store, image_id: str) -> list[tuple[str, bool]]:
    containers = Containers(store)
    found = []
    for container in containers.all():
        if container.image_id == image_id:
            running = containers.state(container).get("status") in ("running", "starting")
            found.append((container.short_id, running))
    return found


def _remove_one(store: Store, ref: str, force: bool) -> list[str]:
    image_id = store.resolve_image(ref)
    by_id = _is_id_reference(store, ref, image_id)
    lines: list[str] = []
    with store.lock():
        tags = store.tags_for(image_id)
        users = _users(store, image_id)
        if not by_id:
            name = normalize_tag(ref)
            if len(tags) > 1 or (users and force):
                store.untag(name)
                lines.append(f"Untagged: {name}")
                if len(tags) > 1 or any(running for _, running in users):
                    return lines
                tags = []
            elif users:
                raise Conflict(
                    f'conflict: unable to remove repository reference "{ref}" (must force) - '
                    f"container {users[0][0]} is using its referenced image {image_id[7:19]}"
                )
        else:
            if len(tags) > 1 and not force:
                raise Conflict(
                    f"conflict: unable to delete {image_id[7:19]} (must be forced) - image is "
                    "referenced in multiple repositories"
                )
            running = [c for c, r in users if r]
            if running:
                raise Conflict(
                    f"conflict: unable to delete {image_id[7:19]} (cannot be forced) - image is "
                    f"being used by running container {running[0]}"
                )
            if users and not force:
                raise Conflict(
                    f"conflict: unable to delete {image_id[7:19]} (must be forced) - image is "
                    f"being used by stopped container {users[0][0]}"
                )
        if store.children(image_id):
            if not by_id:
                for name in tags:
                    store.untag(name)
                    lines.append(f"Untagged: {name}")
                return lines
            raise Conflict(
                f"conflict: unable to delete {image_id[7:19]} (cannot be forced) - image has "
                "dependent child images"
            )
        for name in tags:
            store.untag(name)
            lines.append(f"Untagged: {name}")
        lines += _delete_chain(store, image_id)
    return lines


def _delete_chain(store: Store, image_id: str) -> list[str]:
    """Delete the image, then each untagged, otherwise unused ancestor (build steps)."""
    lines = []
    current: str | None = image_id
    first = True
    while current:
        if not first and (
            store.tags_for(current) or store.children(current) or _users(store, current)
        ):
            break
        try:
            parent = store.image_record(current).parent
        except NotFound:
            break
        store.delete_image_record(current)
        lines.append(f"Deleted: {current}")
        first = False
        current = parent
    return lines


def prune_images(store: Store, *, all_images: bool = False) -> tuple[list[str], int]:
    """Remove dangling images (with `all_images`, every image no container uses)."""
    lines: list[str] = []
    before = _total_layer_bytes(store)
    with store.lock():
        changed = True
        while changed:
            changed = False
            for image_id in store.image_ids():
                if store.children(image_id) or _users(store, image_id):
                    continue
                tags = store.tags_for(image_id)
                if tags and not all_images:
                    continue
                for name in tags:
                    store.untag(name)
                    lines.append(f"untagged: {name}")
                store.delete_image_record(image_id)
                lines.append(f"deleted: {image_id}")
                changed = True
    store.collect_layers()
    return lines, max(before - _total_layer_bytes(store), 0)


def _total_layer_bytes(store: Store) -> int:
    total = 0
    for path in store.layers.iterdir():
        with contextlib.suppress(OSError, ValueError, KeyError):
            import json

            total += int(json.loads((path / "layer.json").read_bytes()).get("size", 0))
    return total


# --- history and inspect --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryRow:
    image: str
    created: float | None
    created_by: str
    size: int
    comment: str


def image_history(store: Store, image_id: str) -> list[HistoryRow]:
    config = store.image_config(image_id)
    history = config.history
    diff_ids = config.diff_ids
    # which image in the parent chain ends at which history entry
    ends: dict[int, str] = {}
    current: str | None = image_id
    while current:
        try:
            ends.setdefault(len(store.image_config(current).history), current)
            current = store.image_record(current).parent
        except (NotFound, ValueError):
            break
    rows = []
    layer_index = 0
    for index, entry in enumerate(history):
        size = 0
        if not entry.get("empty_layer"):
            if layer_index < len(diff_ids):
                with contextlib.suppress(NotFound):
                    size = int(store.layer_info(diff_ids[layer_index]).get("size", 0))
            layer_index += 1
        rows.append(
            HistoryRow(
                image=ends.get(index + 1, "<missing>"),
                created=parse_time(entry.get("created")),
                created_by=str(entry.get("created_by", "")),
                size=size,
                comment=str(entry.get("comment", "")),
            )
        )
    rows.reverse()
    return rows


def inspect_image(store: Store, image_id: str) -> dict[str, Any]:
    config: ImageConfig = store.image_config(image_id)
    record = store.image_record(image_id)
    body = config.body
    layers = [store.layer_diff(d) for d in reversed(config.diff_ids)]
    return {
        "Id": image_id,
        "RepoTags": store.tags_for(image_id),
        "RepoDigests": list(record.repo_digests),
        "Parent": record.parent or "",
        "Comment": str(body.get("comment", "")),
        "Created": config.created or "",
        "Container": str(body.get("container", "")),
        "DockerVersion": str(body.get("docker_version", "")),
        "Author": str(body.get("author", "")),
        "Config": config.config,
        "Architecture": config.architecture,
        **({"Variant": body["variant"]} if body.get("variant") else {}),
        "Os": config.os,
        "Size": store.image_size(config),
        "GraphDriver": {
            "Name": "overlay",
            "Data": {"LowerDir": ":".join(str(p) for p in layers)},
        },
        "RootFS": {"Type": "layers", "Layers": config.diff_ids},
        "Metadata": {"LastTagTime": ""},
    }
