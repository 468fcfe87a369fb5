"""Durations as the model language writes them: `30m`, `12h`, `7d`, `4w` (also `45s`)."""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: object) -> float | None:
    """Seconds for a duration string (possibly zero), or None when it is not one."""
    if not isinstance(text, str):
        return None
    match = _PATTERN.match(text)
    if not match:
        return None
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    """The shortest exact spelling, for explanations and the JSON Schema's examples."""
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
