"""Content digests (`algorithm:encoded`) as the OCI image spec defines them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
_DIGEST = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


class InvalidDigest(ValueError):
    """The string is not a digest this registry can verify."""


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    encoded: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        match = _DIGEST.match(text)
        if not match:
            raise InvalidDigest(f"malformed digest {text[:80]!r}")
        algorithm, encoded = match.groups()
        length = _ALGORITHMS.get(algorithm)
        if length is None:
            raise InvalidDigest(
                f"unsupported digest algorithm {algorithm!r} (use sha256 or sha512)"
            )
        if len(encoded) != length or not all(c in "0123456789abcdef" for c in encoded):
            raise InvalidDigest(f"{algorithm} digest must be {length} lowercase hex characters")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"


def is_digest(reference: str) -> bool:
    """Whether a manifest reference names a digest rather than a tag."""
    return ":" in reference
