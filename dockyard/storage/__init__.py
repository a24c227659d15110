"""Blob drivers: where content-addressed bytes live."""
