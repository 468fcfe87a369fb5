"""Collecting every problem of a model file, each at its position, with near-miss hints."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from qualify.errors import ModelProblem
from qualify.model.source import Located

__all__ = ["Problems", "near_miss"]


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

    def add(self, path: tuple[Any, ...], message: str, *, key: bool = False) -> None:
        pos = self.doc.at(path, key=key)
        self.items.append(ModelProblem(pos.line, pos.column, message))

    def unknown_key(self, path: tuple[Any, ...], what: str, choices: Iterable[str]) -> None:
        """Report the last element of `path` as an unknown key, suggesting the near miss."""
        word = str(path[-1])
        options = sorted(choices)
        guess = near_miss(word, options)
        hint = f"; did you mean `{guess}`?" if guess else f" (expected one of: {', '.join(options)})"
        self.add(path, f"unknown {what} `{word}`{hint}", key=True)

    def expect_mapping(self, path: tuple[Any, ...], value: Any, what: str) -> bool:
        if isinstance(value, dict):
            return True
        self.add(path, f"{what} must be a mapping of keys to values, not {describe(value)}")
        return False

    def check_keys(
        self, path: tuple[Any, ...], mapping: dict[str, Any], allowed: Iterable[str], what: str
    ) -> None:
        allowed = set(allowed)
        for key in mapping:
            if key not in allowed:
                self.unknown_key((*path, key), what, allowed)


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
