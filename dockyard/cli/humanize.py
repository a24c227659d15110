"""Sizes and durations the way the docker CLI prints them (go-units)."""

from __future__ import annotations

import time

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def _g3(value: float) -> str:
    text = f"{value:.3g}"
    if "e" in text:
        text = f"{value:.0f}"
    return text


def human_size(size: float) -> str:
    """go-units HumanSize: 3 significant digits, powers of 1000 (`4.26MB`, `187MB`)."""
    unit = 0
    value = float(size)
    while value >= 1000 and unit < len(_DECIMAL_UNITS) - 1:
        value /= 1000
        unit += 1
    return f"{_g3(value)}{_DECIMAL_UNITS[unit]}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration (`About an hour`, `3 weeks`)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def ago(timestamp: float | None, now: float | None = None) -> str:
    if not timestamp:
        return "N/A"
    return human_duration((now or time.time()) - timestamp) + " ago"


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Columns padded like docker's tabwriter (three spaces between columns)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [headers, *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)
