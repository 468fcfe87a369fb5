"""Collecting every problem of a model file, each at its position, with near-miss hints."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from qualify.errors import ModelProblem
from qualify.model.durations import parse_duration
from qualify.model.source import Located

__all__ = ["Problems", "describe", "near_miss"]

# Keys that belong elsewhere: a hint better than any near miss.
MISPLACED = {
    ("in a fit rule", "event"): "`event` rules belong under `engagement`",
    ("in a fit rule", "where"): "fit rules test the profile with `when`; `where` is for events",
    ("in an engagement rule", "when"): "engagement rules filter event properties with `where`",
}


def near_miss(word: str, choices: Iterable[str]) -> str | None:
    """The choice a user most likely meant by `word`, if any is close enough."""
    options = list(choices)
    lowered = {c.lower(): c for c in options}
    if word.lower() in lowered:
        return lowered[word.lower()]
    found = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[found[0]] if found else None


class Problems:
    """The problems found so far in one document, positioned through its `Located` map."""

    def __init__(self, doc: Located) -> None:
        self.doc = doc
        self.items: list[ModelProblem] = []
        self._suggested: set[tuple[Any, ...]] = set()  # (*path, key) a near miss pointed to

    def add(self, path: tuple[Any, ...], message: str, *, key: bool = False) -> None:
        pos = self.doc.at(path, key=key)
        self.items.append(ModelProblem(pos.line, pos.column, message))

    def check_keys(
        self, path: tuple[Any, ...], mapping: dict[str, Any], allowed: Iterable[str], where: str
    ) -> None:
        """Report every key of `mapping` not in `allowed`, suggesting the near miss."""
        options = sorted(set(allowed))
        for key in mapping:
            if key in options:
                continue
            if key == "<<":
                self.add(
                    (*path, key),
                    "YAML merge keys (`<<`) are not supported: write the keys out",
                    key=True,
                )
                continue
            guess = near_miss(key, options)
            if (where, key) in MISPLACED:
                hint = f"; {MISPLACED[(where, key)]}"
            elif guess:
                hint = f"; did you mean `{guess}`?"
                self._suggested.add((*path, guess))
            else:
                hint = f" (expected one of: {', '.join(options)})"
            self.add((*path, key), f"unknown key `{key}` {where}{hint}", key=True)

    def missing(self, path: tuple[Any, ...], key: str, message: str) -> None:
        """Report a missing key, unless a misspelt key already pointed to it."""
        if (*path, key) not in self._suggested:
            self.add(path, message)

    def expect_mapping(
        self, path: tuple[Any, ...], value: Any, what: str, example: str = ""
    ) -> bool:
        if isinstance(value, dict):
            return True
        hint = f" such as `{example}`" if example else " of keys to values"
        self.add(path, f"{what} must be a mapping{hint}, not {describe(value)}")
        return False

    def duration(self, raw: dict[str, Any], key: str, path: tuple[Any, ...]) -> float | None:
        """Read `raw[key]` as a duration (`30m`, `12h`, `7d`, `4w`), reporting what is wrong."""
        if key not in raw:
            return None
        seconds = parse_duration(raw[key])
        if seconds is None:
            self.add(
                (*path, key),
                f"`{key}` must be a duration such as `30m`, `12h`, `7d` or "
                f"`4w`, not {describe(raw[key])}",
            )
        elif seconds <= 0:
            self.add((*path, key), f"`{key}` must be longer than zero")
            return None
        return seconds


def describe(value: Any) -> str:
    """How a value reads in an error message: its YAML kind and, when short, itself."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean `{str(value).lower()}`"
    if isinstance(value, int | float):
        return f"the number `{value}`"
    if isinstance(value, str):
        return f"the text `{value}`" if len(value) < 40 else "a text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
