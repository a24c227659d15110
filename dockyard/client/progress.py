"""How transfers report progress: the CLI draws bars (or plain lines), libraries pass nothing.

Keys are short blob IDs (the first 12 hex digits, as docker shows them). `advance` takes the
absolute number of bytes done, so a resumed transfer simply reports a smaller number again.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, key: str, action: str, total: int | None) -> None: ...

    def advance(self, key: str, completed: int) -> None: ...

    def finish(self, key: str, status: str) -> None: ...

    def message(self, text: str) -> None: ...


class NoProgress:
    """Reports nothing."""

    def start(self, key: str, action: str, total: int | None) -> None:
        pass

    def advance(self, key: str, completed: int) -> None:
        pass

    def finish(self, key: str, status: str) -> None:
        pass

    def message(self, text: str) -> None:
        pass


class RecordingProgress(NoProgress):
    """Keeps each key's final status and every message (for tests and callers that summarise)."""

    def __init__(self) -> None:
        self.statuses: dict[str, str] = {}
        self.messages: list[str] = []

    def finish(self, key: str, status: str) -> None:
        self.statuses[key] = status

    def message(self, text: str) -> None:
        self.messages.append(text)


def short_id(digest: str) -> str:
    return digest.partition(":")[2][:12] or digest[:12]
