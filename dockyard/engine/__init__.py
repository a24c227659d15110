"""The daemonless image engine: local store, layers, overlay mounts, runc containers, archives."""
