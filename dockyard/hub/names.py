"""Namespace names: Docker Hub's rule for user and organisation IDs."""

from __future__ import annotations

import re

NAMESPACE = re.compile(r"^[a-z0-9]{4,30}$")
OFFICIAL = "library"
RESERVED = frozenset(
    {
        OFFICIAL,
        "admin",
        "api",
        "explore",
        "search",
        "settings",
        "signup",
        "login",
        "logout",
        "static",
        "token",
        "v1",
        "v2",
        "orgs",
        "users",
        "repositories",
        "help",
        "root",
    }
)


def namespace_problem(name: str) -> str | None:
    """Why `name` cannot be a new user or organisation, or None when it can."""
    if not NAMESPACE.match(name):
        return "must be 4 to 30 characters, lowercase letters and digits only"
    if name in RESERVED:
        return "is reserved"
    return None


def canonical_repository(name: str) -> str:
    """`busybox` is the official `library/busybox`, as on Docker Hub."""
    return name if "/" in name else f"{OFFICIAL}/{name}"


def namespace_of(repository: str) -> str:
    return canonical_repository(repository).split("/", 1)[0]


def display_name(repository: str) -> str:
    """How people write it: official images without `library/`."""
    prefix = OFFICIAL + "/"
    if repository.startswith(prefix) and repository.count("/") == 1:
        return repository[len(prefix) :]
    return repository
