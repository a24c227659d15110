"""Image configuration JSON (OCI image spec `config`, same shape as Docker's) and image IDs.

An image's ID is the sha256 digest of its configuration bytes, so the bytes are what is kept;
these helpers build, read and encode them. No I/O here.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dockyard.oci.digest import Digest

EMPTY_LAYER_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_GO_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "i686": "386",
    "i386": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


class InvalidImageConfig(ValueError):
    """The bytes are not an image configuration this store can use."""


def host_architecture() -> str:
    machine = platform.machine().lower()
    return _GO_ARCH.get(machine, machine)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 time as images carry them (nanoseconds allowed)."""
    if not text:
        return None
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    if "." in value:
        head, _, rest = value.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        value = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def encode(config: dict[str, Any]) -> bytes:
    """Compact JSON, keys in insertion order (docker writes its struct's field order)."""
    return json.dumps(config, separators=(",", ":"), ensure_ascii=False).encode()


def image_id(config_bytes: bytes) -> str:
    return str(Digest.of(config_bytes))


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """A parsed view of configuration bytes; `raw` stays the source of truth for the ID."""

    raw: bytes
    body: dict[str, Any]

    @classmethod
    def parse(cls, raw: bytes) -> ImageConfig:
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidImageConfig(f"image config is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise InvalidImageConfig("image config must be a JSON object")
        rootfs = body.get("rootfs")
        if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
            raise InvalidImageConfig('image config needs rootfs.type "layers"')
        diff_ids = rootfs.get("diff_ids") or []
        if not isinstance(diff_ids, list):
            raise InvalidImageConfig("rootfs.diff_ids must be a list")
        for value in diff_ids:
            if not isinstance(value, str):
                raise InvalidImageConfig("rootfs.diff_ids must hold digests")
            Digest.parse(value)
        if not isinstance(body.get("config") or {}, dict):
            raise InvalidImageConfig("config must be an object")
        if not isinstance(body.get("history") or [], list):
            raise InvalidImageConfig("history must be a list")
        return cls(raw, body)

    @property
    def id(self) -> str:
        return image_id(self.raw)

    @property
    def diff_ids(self) -> list[str]:
        return list(self.body["rootfs"].get("diff_ids") or [])

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.body.get("config") or {})

    @property
    def history(self) -> list[dict[str, Any]]:
        return [h for h in self.body.get("history") or [] if isinstance(h, dict)]

    @property
    def created(self) -> str | None:
        value = self.body.get("created")
        return value if isinstance(value, str) else None

    @property
    def architecture(self) -> str:
        return str(self.body.get("architecture") or "")

    @property
    def os(self) -> str:
        return str(self.body.get("os") or "")


def new_config(
    *,
    diff_ids: list[str],
    history: list[dict[str, Any]],
    config: dict[str, Any] | None = None,
    created: str | None = None,
    author: str | None = None,
    architecture: str | None = None,
    os: str = "linux",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A configuration body in docker's key order."""
    body: dict[str, Any] = {"architecture": architecture or host_architecture()}
    if author:
        body["author"] = author
    body["config"] = config or {}
    body["created"] = created or now_rfc3339()
    body.update(extra or {})
    body["history"] = history
    body["os"] = os
    body["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    return body


def history_entry(
    created: str,
    created_by: str = "",
    *,
    comment: str = "",
    author: str = "",
    empty_layer: bool = False,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"created": created}
    if author:
        entry["author"] = author
    if created_by:
        entry["created_by"] = created_by
    if comment:
        entry["comment"] = comment
    if empty_layer:
        entry["empty_layer"] = True
    return entry
