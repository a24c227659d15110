"""Image references (`[host[:port]/]path[:tag][@digest]`) normalised the way docker does.

`busybox` is `docker.io/library/busybox:latest`; its familiar form, the one `docker images`
shows and Dockyard's local store keys tags by, is `busybox:latest`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockyard.oci.digest import Digest, InvalidDigest
from dockyard.oci.names import is_repository_name, is_tag

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAINS = frozenset({"index.docker.io", "registry-1.docker.io"})
OFFICIAL_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_DOMAIN = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$"
)


class InvalidReference(ValueError):
    """The string is not an image reference."""


@dataclass(frozen=True, slots=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def repository(self) -> str:
        """The familiar repository name: `busybox`, `alice/web`, `localhost:5000/web`."""
        if self.domain == DEFAULT_DOMAIN:
            if self.path.startswith(OFFICIAL_NAMESPACE + "/") and self.path.count("/") == 1:
                return self.path[len(OFFICIAL_NAMESPACE) + 1 :]
            return self.path
        return f"{self.domain}/{self.path}"

    @property
    def full_repository(self) -> str:
        return f"{self.domain}/{self.path}"

    def tagged(self) -> str:
        """`repository:tag`, defaulting the tag to `latest` (the store's key for a tag)."""
        return f"{self.repository}:{self.tag or DEFAULT_TAG}"

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> Reference:
    """Parse `text` as docker does (`busybox` → docker.io/library/busybox, no tag set)."""
    if not text or len(text) > 512:
        raise InvalidReference(f"invalid reference format: {text[:80]!r}")
    name, digest = text, None
    if "@" in text:
        name, _, raw_digest = text.partition("@")
        try:
            digest = Digest.parse(raw_digest)
        except InvalidDigest as exc:
            raise InvalidReference(f"invalid reference format: {exc}") from exc
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not is_tag(tag):
            raise InvalidReference(f"invalid tag {tag!r} in reference {text!r}")
    first, sep, rest = name.partition("/")
    if sep and (("." in first or ":" in first or first == "localhost") and _DOMAIN.match(first)):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain in LEGACY_DOMAINS:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"{OFFICIAL_NAMESPACE}/{path}"
    if not is_repository_name(path):
        if path.lower() == path:
            raise InvalidReference(f"invalid reference format: {text!r}")
        raise InvalidReference(
            f"invalid reference format: repository name must be lowercase: {text!r}"
        )
    return Reference(domain, path, tag, digest)


def normalize_tag(text: str) -> str:
    """`busybox` → `busybox:latest`; refuses digests (a tag names a movable pointer)."""
    ref = parse_reference(text)
    if ref.digest is not None:
        raise InvalidReference(f"a tag cannot contain a digest: {text!r}")
    return ref.tagged()
