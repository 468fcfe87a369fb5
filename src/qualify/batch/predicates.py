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

__all__ = ["Document", "Fallbacks", "PredicateCompiler", "distinct_key", "keys_of"]

JSON = dt.JSON()
_NUMBER_TYPES = ("BIGINT", "UBIGINT", "DOUBLE")
_SCALAR_TYPES = ("VARCHAR", "BOOLEAN", *_NUMBER_TYPES)
# Text that SQL reads as a number exactly as Python's float() does (after commas go).
_PLAIN_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
# What Python's str.strip() removes from ASCII text.
_ASCII_SPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"


@ibis.udf.scalar.builtin(
    name="json_extract", signature=((JSON, dt.Array(dt.string)), dt.Array(JSON))
)
def json_extract_many(doc: Any, paths: list[str]) -> Any: ...  # type: ignore[empty-body]


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


def keys_of(predicate: Predicate | None) -> set[str]:
    """Every key a predicate reads."""
    if predicate is None:
        return set()
    if isinstance(predicate, Compare):
        return {predicate.key}
    if isinstance(predicate, Not):
        return keys_of(predicate.item)
    return set().union(*(keys_of(item) for item in predicate.items))


class Document:
    """The values a plan reads from one JSON column, extracted once per row.

    A JSON text is parsed by every `json_extract` call on it, and each operator looks at a
    value several ways (type, text, number); so all the keys are extracted in one call into
    columns, and predicates refer to those columns (`bind` them to the table at hand).
    """

    def __init__(self, names: dict[str, str], fallbacks: Fallbacks) -> None:
        self.names = names
        self.fallbacks = fallbacks

    @classmethod
    def prepare(
        cls, table: ir.Table, column: str, keys: set[str], prefix: str, fallbacks: Fallbacks
    ) -> tuple[ir.Table, Document]:
        """`table` with the value of every key as columns, and the document naming them."""
        ordered = sorted(keys)
        paths: list[str] = []
        for key in ordered:
            paths.append(_path(key))
            if "." in key:  # a flat key that itself contains dots wins when it has a value
                paths.append('$."' + key + '"')
        if not ordered:
            return table, cls({}, fallbacks)
        parsed = json_extract_many(table[column].cast("json"), paths)
        table = table.mutate(**{prefix: parsed})
        values: dict[str, ir.Value] = {}
        names: dict[str, str] = {}
        at = 0
        for n, key in enumerate(ordered):
            name = f"{prefix}{n}"
            names[key] = name
            value = table[prefix][at]
            at += 1
            if "." in key:
                flat = table[prefix][at]
                at += 1
                flat_type = json_type(flat)
                value = ibis.ifelse(flat_type.notnull() & (flat_type != "NULL"), flat, value)
            values[name] = value
        table = table.mutate(**values)
        table = table.mutate(
            **{f"{name}_type": json_type(table[name]) for name in names.values()},
            **{f"{name}_text": json_extract_string(table[name], "$") for name in names.values()},
        )
        return table, cls(names, fallbacks)

    def value(self, table: ir.Table, key: str) -> _Value:
        name = self.names[key]
        return _Value(table[name], table[f"{name}_type"], table[f"{name}_text"], self.fallbacks)


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

    def __init__(
        self, value: ir.Value, kind: ir.StringValue, text: ir.StringValue, fallbacks: Fallbacks
    ) -> None:
        self.json = value
        self.type = kind
        self.text = text
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

    def compile(
        self, predicate: Predicate | None, doc: Document, table: ir.Table
    ) -> ir.BooleanValue:
        """Whether `predicate` holds on each row of `table` (prepared with `doc`)."""
        if predicate is None:
            return ibis.literal(True)
        if isinstance(predicate, Compare):
            return self._compare(predicate, doc.value(table, predicate.key))
        if isinstance(predicate, Not):
            return ~self.compile(predicate.item, doc, table)
        parts = [self.compile(item, doc, table) for item in predicate.items]
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

    def _compare(self, node: Compare, value: _Value) -> ir.BooleanValue:
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


def distinct_key(doc: Document, table: ir.Table, key: str) -> ir.StringValue:
    """`normalise_distinct(lookup(properties, key))` as a text that is equal exactly when the
    Python values are equal (True == 1.0, "a" == "A"); NULL when the event has no value."""
    value = doc.value(table, key)
    fallbacks = doc.fallbacks
    ascii_text = strlen(value.text) == value.text.length()
    number = ibis.ifelse(value.is_bool, ibis.ifelse(value.text == "true", 1.0, 0.0), value.number())
    return ibis.cases(
        (value.missing, ibis.null("string")),
        (value.is_text & ascii_text, "s" + trim(value.text, _ASCII_SPACE).lower()),
        ((value.is_number | value.is_bool), "n" + (number + 0.0).cast("string")),
        else_=fallbacks.distinct(value.json.cast("string")),
    )
