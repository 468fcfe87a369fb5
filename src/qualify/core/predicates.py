"""Predicates compiled to closures: evaluated for every event, so they are kept lean.

Semantics (the user's guide states them too):
- text comparisons (equals, in, not_in, contains, starts_with, ends_with) ignore case;
  `matches` is a regular expression as written, searched anywhere in the text;
- numeric operators (gt, gte, lt, lte, between) read numbers given as text (`"800"`);
  equals compares numbers numerically when both sides are numbers;
- a missing value (absent, null, or the empty text) satisfies nothing but `not_in`,
  `exists: false` and a `not`;
- when the data holds a list, a comparison holds if it holds for any element (`not_in`: for
  no element).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from qualify.model.predicates import AllOf, AnyOf, Compare, Not, Predicate

__all__ = ["Test", "compile_predicate", "keys_read", "lookup", "to_number"]

Test = Callable[[Mapping[str, Any]], bool]


def to_number(value: Any) -> float | None:
    """A number from data: ints, floats and numeric text; never booleans."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip().replace(",", "")) if value.strip() else None
        except ValueError:
            return None
        return number if number is not None and math.isfinite(number) else None
    return None


def lookup(data: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted key; a flat key that itself contains dots wins."""
    value = data.get(key)
    if value is not None or "." not in key:
        return value
    current: Any = data
    for part in key.split("."):
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


def _getter(key: str) -> Callable[[Mapping[str, Any]], Any]:
    if "." not in key:
        return lambda data: data.get(key)
    return lambda data: lookup(data, key)


def _missing(value: Any) -> bool:
    return value is None or value == ""


def _fold(value: Any) -> str:
    return value.casefold() if isinstance(value, str) else str(value).casefold()


def _element_test(op: str, expected: Any) -> Callable[[Any], bool]:
    """A test of one non-missing, non-list value."""
    if op == "equals":
        return _equals(expected)
    if op == "in":
        return _in(expected)
    if op in ("contains", "starts_with", "ends_with"):
        text = _fold(expected)
        method = {
            "contains": str.__contains__,
            "starts_with": str.startswith,
            "ends_with": str.endswith,
        }[op]
        return lambda v: method(v.casefold() if isinstance(v, str) else _fold(v), text)
    if op == "matches":
        pattern = re.compile(expected)
        return lambda v: (
            not isinstance(v, Mapping)
            and pattern.search(v if isinstance(v, str) else str(v)) is not None
        )
    if op == "between":
        low, high = expected
        return lambda v: (n := to_number(v)) is not None and low <= n <= high
    if op == "gt":
        return lambda v: (n := to_number(v)) is not None and n > expected
    if op == "gte":
        return lambda v: (n := to_number(v)) is not None and n >= expected
    if op == "lt":
        return lambda v: (n := to_number(v)) is not None and n < expected
    if op == "lte":
        return lambda v: (n := to_number(v)) is not None and n <= expected
    raise ValueError(f"unknown operator {op}")  # pragma: no cover - the parser rejects it


def _equals(expected: Any) -> Callable[[Any], bool]:
    if expected is None:
        return lambda v: False  # only reached for present values; `key: null` is handled above
    if isinstance(expected, bool):
        text = str(expected).lower()
        return lambda v: v is expected if isinstance(v, bool) else _fold(v) == text
    if isinstance(expected, int | float):
        number = float(expected)
        return lambda v: to_number(v) == number
    folded = expected.casefold()
    number = to_number(expected)
    if number is None:
        return lambda v: isinstance(v, str) and v.casefold() == folded
    return lambda v: v.casefold() == folded if isinstance(v, str) else to_number(v) == number


def _in(expected: list[Any]) -> Callable[[Any], bool]:
    """`in`: any element `equals` the value. A text value matches a text element exactly
    when their casefolded forms are equal, so those are looked up in a set at once."""
    tests = [_equals(e) for e in expected]
    texts = frozenset(e.casefold() for e in expected if isinstance(e, str))
    others = [t for e, t in zip(expected, tests, strict=True) if not isinstance(e, str)]

    def holds(v: Any) -> bool:
        if isinstance(v, str):
            return v.casefold() in texts or (bool(others) and any(t(v) for t in others))
        return any(t(v) for t in tests)

    return holds


def _compare(node: Compare) -> Test:
    get = _getter(node.key)
    op = node.op
    if op == "exists":
        want = node.value
        return lambda data: (not _missing(get(data))) is want
    if op == "equals" and node.value is None:
        return lambda data: _missing(get(data))
    if op == "not_in":
        inside = _element_test("in", node.value)

        def not_in(data: Mapping[str, Any]) -> bool:
            value = get(data)
            if _missing(value):
                return True
            if isinstance(value, list):
                return not any(inside(v) for v in value if not _missing(v))
            return not inside(value)

        return not_in
    test = _element_test(op, node.value)

    def check(value: Any) -> bool:
        if value is None or value == "":
            return False
        if isinstance(value, list):
            return any(test(v) for v in value if not _missing(v))
        return test(value)

    if "." in node.key:
        return lambda data: check(get(data))
    key = node.key
    if op in ("starts_with", "contains", "ends_with"):  # the most common `where`: one call
        text = _fold(node.value)
        method = {
            "contains": str.__contains__,
            "starts_with": str.startswith,
            "ends_with": str.endswith,
        }[op]

        known: dict[str, bool] = {}  # by value: page paths and the like repeat endlessly

        def holds_text(data: Mapping[str, Any]) -> bool:
            value = data.get(key)
            if type(value) is str and value:
                found = known.get(value)
                if found is None:
                    found = method(value.casefold(), text)
                    if len(known) < _KNOWN_TEXTS:
                        known[value] = found
                return found
            return check(value)

        return holds_text
    return lambda data: check(data.get(key))


_KNOWN_TEXTS = 4096  # results remembered per `contains`/`starts_with`/`ends_with` test


def keys_read(predicate: Predicate | None) -> set[str]:
    """The top-level keys of a mapping that `predicate`'s test can read: each key compared
    and, for a dotted key, its first part too (`lookup` walks into it). The test's result is
    a function of those entries alone."""
    if predicate is None:
        return set()
    if isinstance(predicate, Compare):
        return {predicate.key, predicate.key.split(".", 1)[0]}
    if isinstance(predicate, Not):
        return keys_read(predicate.item)
    return set().union(*(keys_read(item) for item in predicate.items))


def compile_predicate(predicate: Predicate | None) -> Test:
    """A closure that tells whether a mapping (traits or properties) satisfies `predicate`."""
    if predicate is None:
        return lambda data: True
    if isinstance(predicate, Compare):
        return _compare(predicate)
    if isinstance(predicate, Not):
        inner = compile_predicate(predicate.item)
        return lambda data: not inner(data)
    tests = [compile_predicate(item) for item in predicate.items]
    if isinstance(predicate, AllOf):
        if not tests:
            return lambda data: True
        if len(tests) == 1:
            return tests[0]
        return lambda data: all(t(data) for t in tests)
    assert isinstance(predicate, AnyOf)
    return lambda data: any(t(data) for t in tests)
