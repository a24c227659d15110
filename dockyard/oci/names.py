"""Repository names and tags, by the OCI distribution spec's grammar."""

from __future__ import annotations

import re

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255


def is_repository_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and REPOSITORY_NAME.match(name) is not None


def is_tag(tag: str) -> bool:
    return TAG.match(tag) is not None
