"""The predicate language compiled to Ibis boolean expressions over a JSON column.

The live engine's semantics (`qualify.core.predicates`) are the contract, to the last case:
text compares casefolded, numbers are read from text, a missing value satisfies nothing but
`not_in`, `exists: false` and a `not`, a list holds when any element does. SQL expresses the
common cases itself — ASCII text, JSON numbers and booleans, plain numeric text — and hands
each rare value (a list or an object, non-ASCII text whose casefolding `lower()` cannot match,
text such as `"1_000"` that only Python reads as a number, any `matches` regex) to a Python
function that *is* the live engine's own test. Exact by construction, and the rare path costs
nothing when the data has no rare values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import orjson

from qualify.core.predicates import compile_predicate, to_number
from qualify.core.scoring import normalise_distinct
from qualify.errors import QualifyError
from qualify.model.predicates import AllOf, AnyOf, Compare, Not, Predicate

__all__ = ["Fallbacks", "PredicateCompiler", "json_value"]

JSON = dt.JSON()
_NUMBER_TYPES = ("BIGINT", "UBIGINT", "DOUBLE")
_SCALAR_TYPES = ("VARCHAR", "BOOLEAN", *_NUMBER_TYPES)
# Text that SQL reads as a number exactly as Python's float() does (after commas go).
_PLAIN_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
# What Python's str.strip() removes from ASCII text.
_ASCII_SPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"


@ibis.udf.scalar.builtin(signature=((JSON, dt.string), JSON))
def json_extract(doc: Any, path: str) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(signature=((JSON,), dt.string))
def json_type(value: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(signature=((JSON, dt.string), dt.string))
def json_extract_string(value: Any, path: str) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(signature=((dt.string,), dt.int64))
def strlen(value: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(signature=((dt.float64,), dt.boolean))
def isfinite(value: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(signature=((dt.string, dt.string), dt.string))
def trim(value: Any, characters: str) -> Any: ...  # type: ignore[empty-body]


def _path(key: str) -> str:
    if '"' in key or "\\" in key:
        raise QualifyError(
            f"the batch engines cannot read the key {key!r}: a key with a double quote or a "
            "backslash; rename it, or score with the live engine (`qualify score`)"
        )
    return "$." + ".".join(f'"{part}"' for part in key.split("."))


def json_value(doc: ir.Value, key: str) -> ir.Value:
    """The JSON value at a dotted key, as `qualify.core.predicates.lookup` finds it: a flat
    key that itself contains dots wins when it holds a value."""
    if "." not in key:
        return json_extract(doc, _path(key))
    flat = json_extract(doc, '$."' + _path(key)[2:].replace('"', "") + '"')
    nested = json_extract(doc, _path(key))
    flat_type = json_type(flat)
    return ibis.ifelse(flat_type.notnull() & (flat_type != "NULL"), flat, nested)


class Fallbacks:
    """The Python side of a plan: the live engine's own tests, for the values SQL leaves.

    One UDF per kind, dispatching on an index, so a plan registers a handful of functions
    however many predicates it has.
    """

    def __init__(self, tag: str) -> None:
        self.leaves: list[Callable[[Mapping[str, Any]], bool]] = []
        tests = self.leaves

        def leaf(index: int, text: str) -> bool:
            return tests[index]({"v": orjson.loads(text)})

        def fold(text: str) -> str:
            return text.casefold()

        def number(text: str) -> float:
            found = to_number(text)
            return math.nan if found is None else found  # the SQL side reads NaN as none

        def distinct(text: str) -> str | None:
            value = normalise_distinct(orjson.loads(text))
            if value is None:
                return None
            return "n" + repr(value) if isinstance(value, float) else "s" + str(value)

        self.leaf = ibis.udf.scalar.python(
            leaf, name=f"qualify_leaf_{tag}", signature=((dt.int64, dt.string), dt.boolean)
        )
        self.fold = ibis.udf.scalar.python(
            fold, name=f"qualify_fold_{tag}", signature=((dt.string,), dt.string)
        )
        self.number = ibis.udf.scalar.python(
            number, name=f"qualify_number_{tag}", signature=((dt.string,), dt.float64)
        )
        self.distinct = ibis.udf.scalar.python(
            distinct, name=f"qualify_distinct_{tag}", signature=((dt.string,), dt.string)
        )

    def add_leaf(self, node: Compare) -> int:
        self.leaves.append(compile_predicate(Compare("v", node.op, node.value)))
        return len(self.leaves) - 1


class _Value:
    """One JSON value and the SQL views of it that the operators need."""

    def __init__(self, value: ir.Value, fallbacks: Fallbacks) -> None:
        self.json = value
        self.type = json_type(value)
        self.text = json_extract_string(value, "$")
        self.fallbacks = fallbacks
        self.is_text = self.type == "VARCHAR"
        self.is_number = self.type.isin(_NUMBER_TYPES)
        self.is_bool = self.type == "BOOLEAN"
        self.missing = value.isnull() | (self.type == "NULL") | (self.is_text & (self.text == ""))
        self.scalar = self.type.isin(_SCALAR_TYPES)

    def folded(self) -> ir.StringValue:
        """`text.casefold()`: `lower()` is the same for ASCII text, Python does the rest."""
        text = self.text
        return ibis.ifelse(strlen(text) == text.length(), text.lower(), self.fallbacks.fold(text))

    def number(self) -> ir.FloatingValue:
        """`to_number`: JSON numbers, numeric text (commas ignored); NULL otherwise."""
        text = self.text
        plain = text.replace(",", "")
        from_text = ibis.ifelse(
            plain.re_search(_PLAIN_NUMBER), plain.try_cast("float64"), self.fallbacks.number(text)
        )
        number = ibis.cases(
            (self.is_number, text.cast("float64")),
            (self.is_text, from_text),
            else_=ibis.null("float64"),
        )
        return ibis.ifelse(isfinite(number), number, ibis.null("float64"))


class PredicateCompiler:
    """Compiles predicates over one JSON column (event properties or a lead's profile)."""

    def __init__(self, fallbacks: Fallbacks) -> None:
        self.fallbacks = fallbacks

    def compile(self, predicate: Predicate | None, doc: ir.Value) -> ir.BooleanValue:
        if predicate is None:
            return ibis.literal(True)
        if isinstance(predicate, Compare):
            return self._compare(predicate, doc)
        if isinstance(predicate, Not):
            return ~self.compile(predicate.item, doc)
        parts = [self.compile(item, doc) for item in predicate.items]
        if isinstance(predicate, AllOf):
            result: ir.BooleanValue = ibis.literal(True)
            for part in parts:
                result = result & part
            return result
        assert isinstance(predicate, AnyOf)
        result = ibis.literal(False)
        for part in parts:
            result = result | part
        return result

    def _compare(self, node: Compare, doc: ir.Value) -> ir.BooleanValue:
        value = _Value(json_value(doc, node.key), self.fallbacks)
        op = node.op
        if op == "exists":
            return ~value.missing if node.value else value.missing
        if op == "equals" and node.value is None:
            return value.missing
        python = self.fallbacks.leaf(self.fallbacks.add_leaf(node), value.json.cast("string"))
        if op == "matches":  # a Python regex: only Python can search it
            return ibis.ifelse(value.missing, False, python)
        if op == "not_in":
            inside = self._element("in", node.value, value).fill_null(False)
            return ibis.cases(
                (value.missing, True), (~value.scalar, python), else_=~inside
            ).fill_null(False)
        sql_can = value.scalar
        if op in ("contains", "starts_with", "ends_with"):  # numbers as Python writes them
            sql_can = value.is_text
        return ibis.cases(
            (value.missing, False),
            (~sql_can, python),
            else_=self._element(op, node.value, value).fill_null(False),
        ).fill_null(False)

    def _element(self, op: str, expected: Any, value: _Value) -> ir.BooleanValue:
        """The operator on one present scalar value (text, number or boolean)."""
        if op == "equals":
            return _equals(expected, value)
        if op == "in":
            texts = sorted({e.casefold() for e in expected if isinstance(e, str)})
            result: ir.BooleanValue = ibis.literal(False)
            if texts:
                result = value.is_text & value.folded().isin(texts)
            for element in expected:
                if not isinstance(element, str) or to_number(element) is not None:
                    result = result | _equals(element, value)
            return result
        if op in ("contains", "starts_with", "ends_with"):
            text = expected.casefold() if isinstance(expected, str) else str(expected).casefold()
            folded = value.folded()
            if op == "contains":
                return folded.contains(text)
            if op == "starts_with":
                return folded.startswith(text)
            return folded.endswith(text)
        number = value.number()
        if op == "between":
            low, high = expected
            return (number >= low) & (number <= high)
        if op == "gt":
            return number > expected
        if op == "gte":
            return number >= expected
        if op == "lt":
            return number < expected
        if op == "lte":
            return number <= expected
        raise QualifyError(f"the batch engines do not know the operator `{op}`")  # pragma: no cover


def _equals(expected: Any, value: _Value) -> ir.BooleanValue:
    """`_equals` of `qualify.core.predicates`, case by case."""
    if isinstance(expected, bool):
        word = str(expected).lower()
        return (value.is_bool & (value.text == word)) | (value.is_text & (value.folded() == word))
    if isinstance(expected, int | float):
        return value.number() == float(expected)
    folded = expected.casefold()
    number = to_number(expected)
    same_text = value.is_text & (value.folded() == folded)
    if number is None:
        return same_text
    return ibis.ifelse(value.is_text, same_text, value.number() == number)


def distinct_key(doc: ir.Value, key: str, fallbacks: Fallbacks) -> ir.StringValue:
    """`normalise_distinct(lookup(properties, key))` as a text that is equal exactly when the
    Python values are equal (True == 1.0, "a" == "A"); NULL when the event has no value."""
    value = _Value(json_value(doc, key), fallbacks)
    ascii_text = strlen(value.text) == value.text.length()
    number = ibis.ifelse(value.is_bool, ibis.ifelse(value.text == "true", 1.0, 0.0), value.number())
    return ibis.cases(
        (value.missing, ibis.null("string")),
        (value.is_text & ascii_text, "s" + trim(value.text, _ASCII_SPACE).lower()),
        ((value.is_number | value.is_bool), "n" + (number + 0.0).cast("string")),
        else_=fallbacks.distinct(value.json.cast("string")),
    )
