"""Failed logins slow an attacker down: after too many, a key is refused for a while."""

from __future__ import annotations

import time
from collections import deque


class LoginLimiter:
    def __init__(self, attempts: int = 5, window: float = 300.0, lockout: float = 300.0) -> None:
        self.attempts = attempts
        self.window = window
        self.lockout = lockout
        self._failures: dict[str, deque[float]] = {}
        self._locked: dict[str, float] = {}

    def retry_after(self, *keys: str) -> float:
        """Seconds until these keys may try again; 0 when they may now."""
        now = time.monotonic()
        waits = [until - now for key in keys if (until := self._locked.get(key, 0.0)) > now]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        if len(self._failures) > 100_000:
            self._failures.clear()
        for key in keys:
            window = self._failures.setdefault(key, deque())
            window.append(now)
            while window and window[0] < now - self.window:
                window.popleft()
            if len(window) >= self.attempts:
                self._locked[key] = now + self.lockout
                window.clear()

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)
