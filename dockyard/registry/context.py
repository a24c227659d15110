"""What every registry handler works with."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from dockyard.registry.auth import Authorizer
from dockyard.registry.cache import ManifestCache
from dockyard.registry.hashers import UploadHashers
from dockyard.registry.metadata import Metadata
from dockyard.storage.base import BlobStore


def same_name(name: str) -> str:
    return name


@dataclass
class Registry:
    store: BlobStore
    meta: Metadata
    authorizer: Authorizer
    cache: ManifestCache
    hashers: UploadHashers = field(default_factory=lambda: UploadHashers())
    automatic_mount: bool = True
    canonical_name: Callable[[str], str] = same_name
    on_pull: Callable[[str], None] | None = None
    on_push: Callable[[str, list[str], str], Awaitable[None]] | None = None
