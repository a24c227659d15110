"""What can go wrong talking to a registry; every message is safe to show (no secrets)."""

from __future__ import annotations


class ClientError(Exception):
    """A registry operation failed; the message says what and where, never a credential."""


class AuthError(ClientError):
    """The registry refused the credentials (or needs some and has none)."""


class NotFoundError(ClientError):
    """The registry has no such repository, manifest, tag or blob."""


class DigestMismatch(ClientError):
    """Bytes received do not hash to the digest they were asked for by."""


class TransportError(ClientError):
    """The connection failed, or kept failing after the retries."""


class CredentialsError(ClientError):
    """The credential store (config.json or a docker-credential helper) failed."""
