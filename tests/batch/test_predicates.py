"""The batch predicate compiler against the live engine's predicates, value by value.

Hypothesis draws a predicate and many documents; each engine evaluates the compiled
expression over all of them in one query, and every answer must equal `compile_predicate`'s.
On PostgreSQL, which cannot call Python, a document may instead be flagged rare (its lead
goes to the live engine): every disagreement must be flagged, and plain values must not be.
"""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import examples
from qualify.batch.engine import Backend
from qualify.batch.predicates import (
    Document,
    Fallbacks,
    PredicateCompiler,
    distinct_key,
    keys_of,
    uses_of,
)
from qualify.core.predicates import compile_predicate
from qualify.core.scoring import normalise_distinct
from qualify.errors import QualifyError
from qualify.model.predicates import AllOf, AnyOf, Compare, Not, Predicate

# Values chosen to reach every branch: case, non-ASCII casefolding (ß → ss, İ), numbers as
# text with commas, underscores and spaces, booleans, lists, objects, null and empty text.
TEXTS = ("Pricing", "pricing", "/pricing/x", "STRASSE", "straße", "İstanbul", "ﬁnance", "", " 7 ")
NUMBERS_AS_TEXT = ("12", "1,000", "1_000", "12.5", "1e3", "inf", "nan", "0x1A", "-0", " 12 ")
SCALARS = st.one_of(
    st.sampled_from(TEXTS + NUMBERS_AS_TEXT),
    st.integers(-3, 2000),
    st.sampled_from((12.5, 1000.0, -0.0, 1e20)),
    st.booleans(),
    st.none(),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(("a", "b")), SCALARS, max_size=2),
)
KEYS = ("k", "n", "o.p")
EXPECTED_TEXT = st.sampled_from(("pricing", "Strasse", "ss", "12", "1000", "true", "/Pricing"))
EXPECTED_SCALAR = st.one_of(EXPECTED_TEXT, st.sampled_from((12, 1000, 12.5, True, False)))


@st.composite
def compares(draw: st.DrawFn) -> Compare:
    key = draw(st.sampled_from(KEYS))
    op = draw(
        st.sampled_from(
            ("equals", "in", "not_in", "contains", "starts_with", "ends_with", "matches")
            + ("between", "gt", "gte", "lt", "lte", "exists")
        )
    )
    if op == "equals":
        value = draw(st.one_of(EXPECTED_SCALAR, st.none()))
    elif op in ("in", "not_in"):
        value = tuple(draw(st.lists(EXPECTED_SCALAR, min_size=1, max_size=3)))
    elif op in ("contains", "starts_with", "ends_with"):
        value = draw(st.one_of(EXPECTED_TEXT, st.sampled_from((12, 1.5, True))))
    elif op == "matches":
        value = draw(st.sampled_from(("^p", "(?i)^p", r"\d+", "ss$")))
    elif op == "between":
        low = draw(st.integers(0, 100))
        value = (low, low + draw(st.integers(0, 2000)))
    elif op == "exists":
        value = draw(st.booleans())
    else:
        value = draw(st.sampled_from((0, 12, 12.5, 1000)))
    return Compare(key, op, value)


predicates = st.recursive(
    compares(),
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.builds(lambda items: AllOf(tuple(items)), st.lists(inner, max_size=3)),
        st.builds(lambda items: AnyOf(tuple(items)), st.lists(inner, max_size=3)),
    ),
    max_leaves=4,
)


@st.composite
def documents(draw: st.DrawFn) -> dict:
    doc = {}
    for key in ("k", "n", "o.p"):
        if draw(st.booleans()):
            doc[key] = draw(VALUES)
    if draw(st.booleans()):
        doc["o"] = {"p": draw(VALUES)}
    return doc


def _documents(backend: Backend, docs: list[dict], keys: set[str]) -> tuple:
    table = pa.table({"i": list(range(len(docs))), "doc": [orjson.dumps(d).decode() for d in docs]})
    fallbacks = Fallbacks("test", backend.dialect)
    t, doc = Document.prepare(backend._table("docs", table), "doc", keys, "k_", fallbacks)
    return t, doc, fallbacks


def evaluate(backend: Backend, predicate: Predicate, docs: list[dict]) -> list[tuple[bool, bool]]:
    """(holds, rare) for each document: rare only where the engine cannot call Python."""
    t, doc, fallbacks = _documents(backend, docs, keys_of(predicate))
    backend.dialect.check_model({op for ops in uses_of(predicate).values() for op in ops})
    holds = PredicateCompiler(fallbacks).compile(predicate, doc, t).fill_null(False)
    rare = doc.rare(t, uses_of(predicate)) if not backend.dialect.python_udfs else False
    expr = t.select(t.i, holds=holds, rare=rare)
    rows = sorted(backend.collect(expr).to_pylist(), key=lambda r: r["i"])
    return [(r["holds"], r["rare"]) for r in rows]


def agrees(backend: Backend, predicate: Predicate, docs: list[dict]) -> None:
    live = compile_predicate(predicate)
    for doc, (holds, rare) in zip(docs, evaluate(backend, predicate, docs), strict=True):
        assert rare or holds == live(doc), doc


def test_batch_predicates_agree_with_the_live_engine(backend: Backend) -> None:
    @settings(
        max_examples=examples(backend, 150),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(predicates, st.lists(documents(), min_size=1, max_size=30))
    def check(predicate: Predicate, docs: list) -> None:
        try:
            agrees(backend, predicate, docs)
        except QualifyError as refused:  # PostgreSQL refuses `matches` at compile time
            assert backend.name == "postgres" and "matches" in str(refused)

    check()


@pytest.mark.parametrize(
    ("predicate", "doc", "expected"),
    [
        (Compare("k", "equals", "strasse"), {"k": "STRASSE"}, True),
        (Compare("k", "equals", "strasse"), {"k": "straße"}, True),  # casefold, not lower
        (Compare("k", "gte", 1000), {"k": "1,000"}, True),
        (Compare("k", "gte", 1000), {"k": "1_000"}, True),  # Python's float() reads it
        (Compare("k", "contains", "pric"), {"k": ["x", "/Pricing"]}, True),
        (Compare("k", "not_in", ("a",)), {"k": ["A", "b"]}, False),
        (Compare("o.p", "equals", 12), {"o.p": None, "o": {"p": "12"}}, True),
        (Compare("k", "matches", r"\d"), {"k": 12}, True),
        # a step into anything but an object finds nothing, a list's items included
        (Compare("o.0", "equals", "12"), {"o": ["12"]}, False),
        (Compare("o.0", "exists", True), {"o": [{"0": 1}]}, False),
        (Compare("o.0", "equals", "12"), {"o": {"0": "12"}}, True),
    ],
)
def test_edge_cases_take_the_exact_path(
    backend: Backend, predicate: Predicate, doc: dict, expected: bool
) -> None:
    assert compile_predicate(predicate)(doc) is expected
    if backend.name == "postgres" and predicate.op == "matches":
        with pytest.raises(QualifyError, match="cannot run `matches`"):
            evaluate(backend, predicate, [doc])
        return
    ((holds, rare),) = evaluate(backend, predicate, [doc])
    if backend.name == "postgres" and rare:
        return  # the live engine scores it
    assert holds is expected


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("predicate", "doc", "rare"),
    [
        (Compare("k", "equals", "pricing"), {"k": "Pricing"}, False),
        (Compare("k", "gte", 1000), {"k": "1,000"}, False),
        (Compare("k", "gte", 10), {"k": 12.5}, False),
        (Compare("k", "in", ("a", "b")), {"k": True}, False),
        (Compare("k", "contains", "ri"), {"k": "Pricing"}, False),
        (Compare("k", "equals", "x"), {"k": None}, False),
        (Compare("k", "equals", "strasse"), {"k": "straße"}, True),
        (Compare("k", "gte", 1000), {"k": "1_000"}, True),
        (Compare("k", "gte", 1000), {"k": "1e999999"}, True),
        (Compare("k", "gte", 1000), {"k": 1e300}, True),
        (Compare("k", "contains", "1"), {"k": 12}, True),
        (Compare("k", "in", ("a",)), {"k": ["a"]}, True),
    ],
)
def test_postgres_flags_exactly_the_values_sql_cannot_judge(
    postgres_backend: Backend, predicate: Compare, doc: dict, rare: bool
) -> None:
    """The rare flag is not a blanket: plain values stay in SQL, odd ones go to Python."""
    ((holds, flagged),) = evaluate(postgres_backend, predicate, [doc])
    assert flagged is rare
    if not rare:
        assert holds is compile_predicate(predicate)(doc)


def test_distinct_keys_are_equal_exactly_when_python_values_are(backend: Backend) -> None:
    @settings(
        max_examples=examples(backend, 60),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(VALUES, min_size=1, max_size=30))
    def check(values: list) -> None:
        docs = [{"k": v} for v in values]
        t, doc, _ = _documents(backend, docs, {"k"})
        rare = doc.rare(t, {"k": {"distinct"}}) if not backend.dialect.python_udfs else False
        expr = t.select(t.i, key=distinct_key(doc, t, "k"), rare=rare)
        rows = sorted(backend.collect(expr).to_pylist(), key=lambda r: r["i"])
        python = [normalise_distinct(v) for v in values]
        for a, row in enumerate(rows):
            if row["rare"]:
                continue
            assert (row["key"] is None) == (python[a] is None), values[a]
            for b, other in enumerate(rows):
                if other["rare"] or python[a] is None or python[b] is None:
                    continue
                assert (row["key"] == other["key"]) == (python[a] == python[b]), (
                    values[a],
                    values[b],
                )

    check()
