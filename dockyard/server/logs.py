"""Structured log lines an operator can grep: `time level logger message key=value…`."""

from __future__ import annotations

import logging
import time


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        level = record.levelname.lower()
        line = f"time={stamp}Z level={level} logger={record.name} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger("dockyard")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
