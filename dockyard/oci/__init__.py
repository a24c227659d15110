"""Pure OCI and Docker types: digests, names, media types, manifests. No I/O here."""
