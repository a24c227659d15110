"""`docker commit`: a container's overlay upper dir becomes a layer on top of its image."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from dockyard.engine.changes import apply_change
from dockyard.engine.containers import Container
from dockyard.engine.layers import LayerResult, Limits, layer_digest_and_size, write_layer_tar
from dockyard.engine.store import Store, StoreError
from dockyard.oci.image import encode, history_entry, new_config, now_rfc3339
from dockyard.oci.reference import InvalidReference, normalize_tag


def layer_from_dir(store: Store, source: Path) -> LayerResult:
    """Turn an overlay-form directory into a stored layer (its tar is streamed, not kept).

    The tar is generated and unpacked in one pass through a pipe, so the stored layer is
    exactly what the tar says, and regenerating the tar from it gives the same diff ID.
    Call inside `store.creating_layers()`.
    """
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with open(write_fd, "wb", buffering=1 << 20) as sink:
                write_layer_tar(source, sink)
        except BaseException as exc:  # handed to the consumer
            failure.append(exc)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        with open(read_fd, "rb", buffering=1 << 20) as reader:
            result = store.add_layer(reader, Limits(), keep_blob=False)  # type: ignore[arg-type]
    finally:
        producer.join()
    if failure:
        raise failure[0]
    return result


def adopt_own_dir(store: Store, source: Path) -> str:
    """Make `source`, an overlay-form directory this process wrote itself, a stored layer by
    moving it into the store; only its tar's digest is computed. Returns the diff ID.

    Never for what a container wrote: that goes through `layer_from_dir`, whose unpacking
    refuses or filters what a layer may not hold. Call inside `store.creating_layers()`.
    """
    diff_id, size = layer_digest_and_size(source)
    if store.has_layer(diff_id):
        return diff_id
    store.adopt_layer_dir(source, diff_id, size)
    return diff_id


def commit(
    store: Store,
    container: Container,
    *,
    tag: str | None = None,
    message: str = "",
    author: str = "",
    changes: list[str] | None = None,
) -> str:
    """Commit the container's changes as a new image; returns the image ID."""
    if tag:
        try:
            tag = normalize_tag(tag)
        except InvalidReference as exc:
            raise StoreError(str(exc)) from exc
    parent = store.image_config(container.image_id)
    config = dict(container.config)
    config.pop("Hostname", None)
    config.pop("Image", None)
    for change in changes or []:
        apply_change(config, change)
    with store.creating_layers():
        layer = layer_from_dir(store, container.upper)
        created = now_rfc3339()
        history = [
            *parent.history,
            history_entry(created, " ".join(container.argv), comment=message, author=author),
        ]
        extra = {"container": container.id}
        body = new_config(
            diff_ids=[*parent.diff_ids, layer.diff_id],
            history=history,
            config=config,
            created=created,
            author=author,
            architecture=parent.architecture or None,
            os=parent.os or "linux",
            extra=extra,
        )
        if parent.body.get("variant"):
            body["variant"] = parent.body["variant"]
        return store.put_image(encode(body), parent=container.image_id, tags=[tag] if tag else [])
