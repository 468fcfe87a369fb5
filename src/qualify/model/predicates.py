"""The predicate language of `when` (on traits) and `where` (on event properties).

A mapping of keys to conditions, all of which must hold; `any`, `all` and `not` combine.
A condition is a scalar (equals) or a mapping of operators. This module only parses and
validates; `qualify.core.predicates` turns the frozen tree into fast closures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from qualify.model.problems import Problems, describe, near_miss

__all__ = [
    "OPERATORS",
    "AllOf",
    "AnyOf",
    "Compare",
    "Not",
    "Predicate",
    "parse_predicate",
]

STRING_OPERATORS = ("contains", "starts_with", "ends_with")
NUMERIC_OPERATORS = ("gt", "gte", "lt", "lte")
OPERATORS = (
    "equals",
    "in",
    "not_in",
    *STRING_OPERATORS,
    "matches",
    "between",
    *NUMERIC_OPERATORS,
    "exists",
)
COMBINATORS = ("any", "all", "not")
SYNONYMS = {
    "greater_than": "gt",
    "more_than": "gt",
    "above": "gt",
    "greater_than_or_equal": "gte",
    "at_least": "gte",
    "min": "gte",
    "less_than": "lt",
    "below": "lt",
    "less_than_or_equal": "lte",
    "at_most": "lte",
    "max": "lte",
    "eq": "equals",
    "is": "equals",
    "equal": "equals",
    "startswith": "starts_with",
    "endswith": "ends_with",
    "prefix": "starts_with",
    "includes": "contains",
    "has": "contains",
    "regex": "matches",
    "match": "matches",
    "one_of": "in",
    "none_of": "not_in",
    "range": "between",
}

Scalar = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Compare:
    """`key` (dotted) compared by `op` with `value` (a scalar, or a tuple for in/between)."""

    key: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Predicate, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Predicate, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Predicate


Predicate = Compare | AllOf | AnyOf | Not


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_predicate(value: Any, path: tuple[Any, ...], problems: Problems) -> Predicate:
    """Parse one predicate mapping; problems are collected, never raised."""
    if not isinstance(value, dict):
        problems.add(
            path,
            f"a condition must be a mapping such as `{{industry: saas}}`, not {describe(value)}",
        )
        return AllOf(())
    items: list[Predicate] = []
    for key, condition in value.items():
        here = (*path, key)
        if key in ("any", "all"):
            if not isinstance(condition, list) or not condition:
                problems.add(here, f"`{key}` takes a non-empty list of conditions")
                continue
            parts = tuple(
                parse_predicate(item, (*here, i), problems) for i, item in enumerate(condition)
            )
            items.append(AnyOf(parts) if key == "any" else AllOf(parts))
        elif key == "not":
            items.append(Not(parse_predicate(condition, here, problems)))
        else:
            items.extend(_parse_field(key, condition, here, problems))
    return items[0] if len(items) == 1 else AllOf(tuple(items))


def _parse_field(
    key: str, condition: Any, path: tuple[Any, ...], problems: Problems
) -> list[Compare]:
    if not key or key.startswith(".") or key.endswith(".") or ".." in key:
        problems.add(path, f"`{key}` is not a valid key: use names joined by dots", key=True)
        return []
    if key in OPERATORS and not isinstance(condition, dict):
        problems.add(
            path,
            f"`{key}` is an operator: name the field it tests first, e.g. `path: {{{key}: ...}}`",
            key=True,
        )
        return []
    if _is_scalar(condition):
        return [Compare(key, "equals", condition)]
    if isinstance(condition, list):
        problems.add(path, f"a list needs an operator: write `{key}: {{in: [...]}}`")
        return []
    result = []
    for op, operand in condition.items():
        here = (*path, op)
        if op not in OPERATORS:
            guess = SYNONYMS.get(op.lower()) or near_miss(op, OPERATORS)
            if guess and not isinstance(operand, dict):
                hint = f"; did you mean `{guess}`?"
            else:
                hint = f"; to reach a nested value write `{key}.{op}`"
            problems.add(here, f"unknown operator `{op}`{hint}", key=True)
            continue
        parsed = _parse_operand(op, operand, here, problems)
        if parsed is not _INVALID:
            result.append(Compare(key, op, parsed))
    if not condition:
        problems.add(path, f"`{key}` has no condition: give a value or an operator")
    return result


_INVALID = object()


def _parse_operand(op: str, operand: Any, path: tuple[Any, ...], problems: Problems) -> Any:
    if op in ("in", "not_in"):
        if not isinstance(operand, list) or not operand or not all(map(_is_scalar, operand)):
            problems.add(path, f"`{op}` takes a non-empty list of values, not {describe(operand)}")
            return _INVALID
        return tuple(operand)
    if op == "between":
        if not isinstance(operand, list) or len(operand) != 2 or not all(map(_is_number, operand)):
            problems.add(
                path, f"`between` takes two numbers `[low, high]`, not {describe(operand)}"
            )
            return _INVALID
        low, high = operand
        if low > high:
            problems.add(path, f"`between` needs low ≤ high, got [{low}, {high}]")
            return _INVALID
        return (low, high)
    if op in NUMERIC_OPERATORS:
        if not _is_number(operand):
            problems.add(path, f"`{op}` compares with a number, not {describe(operand)}")
            return _INVALID
        return operand
    if op == "exists":
        if not isinstance(operand, bool):
            extra = (
                " (`yes`/`no` are text in YAML 1.2: write `true`)"
                if isinstance(operand, str) and operand.lower() in ("yes", "no", "on", "off")
                else ""
            )
            problems.add(path, f"`exists` takes true or false, not {describe(operand)}{extra}")
            return _INVALID
        return operand
    if op == "matches":
        if not isinstance(operand, str):
            problems.add(path, f"`matches` takes a regular expression, not {describe(operand)}")
            return _INVALID
        try:
            re.compile(operand)
        except re.error as exc:
            problems.add(path, f"`matches` has an invalid regular expression: {exc}")
            return _INVALID
        return operand
    if op in STRING_OPERATORS:
        if not isinstance(operand, str | int | float) or isinstance(operand, bool):
            problems.add(path, f"`{op}` takes a text, not {describe(operand)}")
            return _INVALID
        return str(operand)
    # equals
    if not _is_scalar(operand):
        problems.add(path, f"`equals` takes a single value, not {describe(operand)}")
        return _INVALID
    return operand
