"""Errors of the builder; every message is meant for the person running the build."""

from __future__ import annotations


class BuildError(Exception):
    """The build cannot go on; the message says why."""


class DockerfileParseError(BuildError):
    """The Dockerfile is malformed."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        prefix = f"Dockerfile parse error line {line}: " if line else "Dockerfile parse error: "
        super().__init__(prefix + message)


class CommandFailed(BuildError):
    """A RUN step exited non-zero."""

    def __init__(self, command: str, code: int) -> None:
        self.code = code
        super().__init__(f"The command '{command}' returned a non-zero code: {code}")
