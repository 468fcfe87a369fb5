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

from qualify.batch.dialects import Dialect
from qualify.core.predicates import compile_predicate, to_number
from qualify.core.scoring import normalise_distinct
from qualify.errors import QualifyError
from qualify.model.predicates import AllOf, AnyOf, Compare, Not, Predicate

__all__ = [
    "Document",
    "Fallbacks",
    "PredicateCompiler",
    "distinct_key",
    "keys_of",
    "operators_of",
    "uses_of",
]

_SCALAR_TYPES = ("string", "number", "boolean")
# Python reads these as numbers (`float(" 1_000 ")`, "inf"); where SQL cannot, the text is rare.
_MAYBE_NUMBER = r"[0-9]|[iI][nN][fF]|[nN][aA][nN]"


def keys_of(predicate: Predicate | None) -> set[str]:
    """Every key a predicate reads."""
    if predicate is None:
        return set()
    if isinstance(predicate, Compare):
        return {predicate.key}
    if isinstance(predicate, Not):
        return keys_of(predicate.item)
    return set().union(*(keys_of(item) for item in predicate.items))


def operators_of(predicate: Predicate | None) -> set[str]:
    """Every operator a predicate uses."""
    return {op for ops in uses_of(predicate).values() for op in ops}


def uses_of(predicate: Predicate | None) -> dict[str, set[str]]:
    """The operators applied to each key (with `=number` for a numeric comparison)."""
    found: dict[str, set[str]] = {}
    if predicate is None:
        return found
    if isinstance(predicate, Compare):
        ops = {predicate.op}
        if predicate.op in ("equals", "in", "not_in"):
            expected = predicate.value if predicate.op != "equals" else [predicate.value]
            if any(not isinstance(e, str) or to_number(e) is not None for e in expected):
                ops.add("=number")
        found[predicate.key] = ops
        return found
    items = [predicate.item] if isinstance(predicate, Not) else list(predicate.items)
    for item in items:
        for key, ops in uses_of(item).items():
            found.setdefault(key, set()).update(ops)
    return found


_NUMERIC = {"gt", "gte", "lt", "lte", "between", "=number", "distinct"}
_TEXTUAL = {"contains", "starts_with", "ends_with"}


class Document:
    """The values a plan reads from one JSON column, extracted once per row.

    A JSON text is parsed by every extraction from it, and each operator looks at a value
    several ways (type, text, number); so all the keys are extracted at once into columns,
    and predicates refer to those columns (`bind` them to the table at hand).
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
        if not ordered:
            return table, cls({}, fallbacks)
        found = fallbacks.dialect.extract(table, column, ordered, prefix)
        names = {key: f"{prefix}{n}" for n, key in enumerate(ordered)}
        columns: dict[str, ir.Value] = {}
        for key, (json, kind, text) in found.items():
            name = names[key]
            columns[name] = json
            columns[f"{name}_type"] = kind
            columns[f"{name}_text"] = text
        return table.mutate(**columns), cls(names, fallbacks)

    def value(self, table: ir.Table, key: str) -> _Value:
        name = self.names[key]
        return _Value(table[name], table[f"{name}_type"], table[f"{name}_text"], self.fallbacks)

    def rare(self, table: ir.Table, uses: dict[str, set[str]]) -> ir.BooleanValue:
        """Whether a row holds a value that only Python judges exactly, for an engine that
        cannot call Python: such rows' leads are scored by the live engine instead.

        The test is on values, wider than the plan's own fallbacks (which it must cover):
        lists and objects, non-ASCII text, numbers out of the engine's exact range, text
        Python may read as a number where a number is wanted, a number or a boolean where
        text is searched.
        """
        dialect = self.fallbacks.dialect
        result: ir.BooleanValue = ibis.literal(False)
        for key, ops in sorted(uses.items()):
            if key not in self.names:
                continue
            value = self.value(table, key)
            odd = value.type.isin(("array", "object")) | (
                value.is_text & ~dialect.is_ascii(value.text)
            )
            if ops & _NUMERIC:
                plain = value.text.replace(",", "")
                odd = odd | (
                    value.is_text
                    & ~plain.re_search(dialect.number_pattern)
                    & value.text.re_search(_MAYBE_NUMBER)
                )
                odd = odd | (value.is_number & value.number().isnull())
            if ops & _TEXTUAL:
                odd = odd | value.is_number | value.is_bool
            result = result | (~value.missing & odd).fill_null(False)
        return result


class Fallbacks:
    """The Python side of a plan: the live engine's own tests, for the values SQL leaves.

    One UDF per kind, dispatching on an index, so a plan registers a handful of functions
    however many predicates it has. On an engine that cannot call Python the fallbacks are
    placeholders, and `Document.rare` flags the rows that would have needed them.
    """

    def __init__(self, tag: str, dialect: Dialect) -> None:
        self.dialect = dialect
        self.leaves: list[Callable[[Mapping[str, Any]], bool]] = []
        tests = self.leaves
        # Spark runs a Python function on every row, not only where a CASE needs it, so
        # each one takes NULL calmly.

        def leaf(index: int, text: str | None) -> bool | None:
            if text is None:
                return None
            return tests[index]({"v": orjson.loads(text)})

        def fold(text: str | None) -> str | None:
            return None if text is None else text.casefold()

        def number(text: str | None) -> float:
            found = None if text is None else to_number(text)
            return math.nan if found is None else found  # the SQL side reads NaN as none

        def distinct(text: str | None) -> str | None:
            value = None if text is None else normalise_distinct(orjson.loads(text))
            if value is None:
                return None
            return "n" + repr(value) if isinstance(value, float) else "s" + str(value)

        self._leaf = self._udf(leaf, f"qualify_leaf_{tag}", (dt.int64, dt.string), dt.boolean)
        self._fold = self._udf(fold, f"qualify_fold_{tag}", (dt.string,), dt.string)
        self._number = self._udf(number, f"qualify_number_{tag}", (dt.string,), dt.float64)
        self._distinct = self._udf(distinct, f"qualify_distinct_{tag}", (dt.string,), dt.string)

    def _udf(self, func: Callable, name: str, args: tuple, result: dt.DataType) -> Any:
        if not self.dialect.python_udfs:
            return None
        return ibis.udf.scalar.python(func, name=name, signature=(args, result))

    def leaf(self, node: Compare, json: ir.StringValue) -> ir.BooleanValue:
        """The live engine's test of `node` on a value given as JSON text."""
        if self._leaf is None:
            return ibis.literal(False)
        self.leaves.append(compile_predicate(Compare("v", node.op, node.value)))
        return self._leaf(len(self.leaves) - 1, json)

    def fold(self, text: ir.StringValue) -> ir.StringValue:
        return text.lower() if self._fold is None else self._fold(text)

    def number(self, text: ir.StringValue) -> ir.FloatingValue:
        return ibis.null("float64") if self._number is None else self._number(text)

    def distinct(self, json: ir.StringValue) -> ir.StringValue:
        return ibis.null("string") if self._distinct is None else self._distinct(json)


class _Value:
    """One JSON value and the SQL views of it that the operators need."""

    def __init__(
        self, value: ir.Value, kind: ir.StringValue, text: ir.StringValue, fallbacks: Fallbacks
    ) -> None:
        self.json = value
        self.type = kind
        self.text = text
        self.fallbacks = fallbacks
        self.dialect = fallbacks.dialect
        self.is_text = kind == "string"
        self.is_number = kind == "number"
        self.is_bool = kind == "boolean"
        self.missing = kind.isnull() | (kind == "null") | (self.is_text & (text == ""))
        self.scalar = kind.isin(_SCALAR_TYPES)

    def folded(self) -> ir.StringValue:
        """`text.casefold()`: `lower()` is the same for ASCII text, Python does the rest."""
        text = self.text
        return ibis.ifelse(self.dialect.is_ascii(text), text.lower(), self.fallbacks.fold(text))

    def number(self) -> ir.FloatingValue:
        """`to_number`: JSON numbers, numeric text (commas ignored); NULL otherwise."""
        text = self.text
        plain = text.replace(",", "")
        from_text = ibis.ifelse(
            plain.re_search(self.dialect.number_pattern),
            self.dialect.text_number(plain),
            self.fallbacks.number(text),
        )
        number = ibis.cases(
            (self.is_number, self.dialect.json_number(text)),
            (self.is_text, from_text),
            else_=ibis.null("float64"),
        )
        return ibis.ifelse(self.dialect.finite(number), number, ibis.null("float64"))


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
        python = self.fallbacks.leaf(node, value.json)
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
    dialect = fallbacks.dialect
    ascii_text = dialect.is_ascii(value.text)
    number = ibis.ifelse(value.is_bool, ibis.ifelse(value.text == "true", 1.0, 0.0), value.number())
    return ibis.cases(
        (value.missing, ibis.null("string")),
        (value.is_text & ascii_text, "s" + dialect.strip(value.text).lower()),
        ((value.is_number | value.is_bool), "n" + dialect.float_text(number)),
        else_=fallbacks.distinct(value.json),
    )
