"""What every registry handler works with."""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard.registry.auth import Authorizer
from dockyard.registry.cache import ManifestCache
from dockyard.registry.hashers import UploadHashers
from dockyard.registry.metadata import Metadata
from dockyard.storage.base import BlobStore


@dataclass
class Registry:
    store: BlobStore
    meta: Metadata
    authorizer: Authorizer
    cache: ManifestCache
    hashers: UploadHashers = field(default_factory=lambda: UploadHashers())
    automatic_mount: bool = True
