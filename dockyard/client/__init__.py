"""The registry client: credentials, the auth challenge, and push/pull over the distribution API.

Imports only `dockyard.oci` below it; the CLI and the builder wire it to the engine's store.
"""
