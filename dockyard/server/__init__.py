"""The hub process: configuration and the ASGI application that wires every layer."""
