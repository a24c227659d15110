"""Parsing and structural validation of image manifests and indexes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest, InvalidDigest

MAX_MANIFEST_SIZE = 4 * 1024 * 1024


class InvalidManifest(ValueError):
    """The bytes are not a manifest of a supported, well-formed kind."""


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    urls: tuple[str, ...] = ()
    platform: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, value: Any, where: str) -> Descriptor:
        if not isinstance(value, dict):
            raise InvalidManifest(f"{where} must be a descriptor object")
        media_type = value.get("mediaType")
        digest = value.get("digest")
        size = value.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise InvalidManifest(f"{where}.mediaType must be a non-empty string")
        if not isinstance(digest, str):
            raise InvalidManifest(f"{where}.digest must be a string")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidManifest(f"{where}.size must be a non-negative integer")
        try:
            parsed = Digest.parse(digest)
        except InvalidDigest as exc:
            raise InvalidManifest(f"{where}.digest: {exc}") from exc
        urls = value.get("urls") or ()
        if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
            raise InvalidManifest(f"{where}.urls must be a list of strings")
        annotations = _annotations(value.get("annotations"), where)
        artifact_type = value.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise InvalidManifest(f"{where}.artifactType must be a string")
        platform = value.get("platform")
        if platform is not None and not isinstance(platform, dict):
            raise InvalidManifest(f"{where}.platform must be an object")
        return cls(media_type, parsed, size, artifact_type, annotations, tuple(urls), platform)

    @property
    def distributable(self) -> bool:
        """Whether the registry must hold this blob (foreign layers live elsewhere)."""
        return not (self.urls and self.media_type in mt.NON_DISTRIBUTABLE_LAYERS)


@dataclass(frozen=True, slots=True)
class Manifest:
    media_type: str
    blobs: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: str | None
    annotations: dict[str, str] | None = field(default=None)


def _annotations(value: Any, where: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidManifest(f"{where}.annotations must map strings to strings")
    return value


def _descriptors(body: dict[str, Any], key: str, required: bool) -> tuple[Descriptor, ...]:
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidManifest(f"{key} is required")
        return ()
    if not isinstance(value, list):
        raise InvalidManifest(f"{key} must be a list")
    return tuple(Descriptor.from_json(item, f"{key}[{i}]") for i, item in enumerate(value))


def parse_manifest(data: bytes, content_type: str | None) -> Manifest:
    """Parse manifest bytes pushed with `content_type`, checking the structure its type demands."""
    if len(data) > MAX_MANIFEST_SIZE:
        raise InvalidManifest(f"manifest is larger than {MAX_MANIFEST_SIZE} bytes")
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidManifest(f"manifest is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidManifest("manifest must be a JSON object")
    declared = body.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise InvalidManifest("mediaType must be a string")
    content_type = (content_type or "").split(";")[0].strip() or None
    media_type = declared or content_type or _infer(body)
    if declared and content_type and declared != content_type:
        raise InvalidManifest(
            f"Content-Type {content_type!r} does not match the manifest's mediaType {declared!r}"
        )
    if media_type in (mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED):
        raise InvalidManifest("Docker schema 1 manifests are not supported; push schema 2 or OCI")
    if media_type not in mt.MANIFESTS:
        raise InvalidManifest(f"unsupported manifest media type {media_type!r}")
    if media_type != mt.OCI_ARTIFACT_MANIFEST and body.get("schemaVersion") != 2:
        raise InvalidManifest("schemaVersion must be 2")
    subject = body.get("subject")
    subject_descriptor = Descriptor.from_json(subject, "subject") if subject is not None else None
    artifact_type = body.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise InvalidManifest("artifactType must be a string")
    annotations = _annotations(body.get("annotations"), "manifest")
    if media_type in mt.INDEXES:
        children = _descriptors(body, "manifests", required=True)
        return Manifest(media_type, (), children, subject_descriptor, artifact_type, annotations)
    if media_type == mt.OCI_ARTIFACT_MANIFEST:
        if not artifact_type:
            raise InvalidManifest("artifactType is required in an artifact manifest")
        blobs = _descriptors(body, "blobs", required=False)
        return Manifest(media_type, blobs, (), subject_descriptor, artifact_type, annotations)
    config = Descriptor.from_json(body.get("config"), "config")
    layers = _descriptors(body, "layers", required=media_type == mt.DOCKER_MANIFEST)
    return Manifest(
        media_type,
        (config, *layers),
        (),
        subject_descriptor,
        artifact_type or config.media_type,
        annotations,
    )


def _infer(body: dict[str, Any]) -> str:
    """The media type of an OCI manifest that omits mediaType and came without a Content-Type."""
    if "manifests" in body:
        return mt.OCI_INDEX
    if "config" in body:
        return mt.OCI_MANIFEST
    raise InvalidManifest("cannot tell the manifest's media type: send a Content-Type")
