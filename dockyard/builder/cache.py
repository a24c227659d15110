"""The build cache: a step's key (parent image, instruction, source checksums, build args)
→ the image it produced, kept under ROOT/builder/cache/ as one small file per key."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from dockyard.engine.fsutil import write_atomic
from dockyard.engine.store import Store


def step_key(parent: str | None, parts: list[object]) -> str:
    text = json.dumps([parent or "scratch", *parts], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


class BuildCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = store.root / "builder" / "cache"

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / key

    def get(self, key: str) -> str | None:
        """The cached image for `key`, if it (and so its layers) is still in the store."""
        try:
            image_id = self._path(key).read_text().strip()
        except OSError:
            return None
        with contextlib.suppress(ValueError):
            if self.store.has_image(image_id):
                return image_id
        return None

    def put(self, key: str, image_id: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            write_atomic(path, image_id.encode())
