"""The batch predicate compiler against the live engine's predicates, value by value.

Hypothesis draws a predicate and many documents; DuckDB evaluates the compiled expression
over all of them in one query, and every answer must equal `compile_predicate`'s.
"""

from __future__ import annotations

import ibis
import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qualify.batch.predicates import Document, Fallbacks, PredicateCompiler, distinct_key, keys_of
from qualify.core.predicates import compile_predicate
from qualify.core.scoring import normalise_distinct
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


def evaluate(predicate: Predicate, docs: list[dict]) -> list[bool]:
    table = pa.table({"i": list(range(len(docs))), "doc": [orjson.dumps(d).decode() for d in docs]})
    con = ibis.duckdb.connect()
    fallbacks = Fallbacks("test")
    t, doc = Document.prepare(
        con.create_table("docs", table), "doc", keys_of(predicate), "k_", fallbacks
    )
    holds = PredicateCompiler(fallbacks).compile(predicate, doc, t).fill_null(False)
    expr = t.select(t.i, holds=holds)
    rows = sorted(expr.to_pyarrow().to_pylist(), key=lambda r: r["i"])
    return [r["holds"] for r in rows]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(predicates, st.lists(documents(), min_size=1, max_size=30))
def test_batch_predicates_agree_with_the_live_engine(predicate: Predicate, docs: list) -> None:
    live = compile_predicate(predicate)
    assert evaluate(predicate, docs) == [live(d) for d in docs]


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
    ],
)
def test_edge_cases_take_the_exact_path(predicate: Predicate, doc: dict, expected: bool) -> None:
    assert compile_predicate(predicate)(doc) is expected
    assert evaluate(predicate, [doc]) == [expected]


@settings(max_examples=60, deadline=None)
@given(st.lists(VALUES, min_size=1, max_size=30))
def test_distinct_keys_are_equal_exactly_when_python_values_are(values: list) -> None:
    docs = [{"k": v} for v in values]
    table = pa.table({"i": list(range(len(docs))), "doc": [orjson.dumps(d).decode() for d in docs]})
    con = ibis.duckdb.connect()
    t, doc = Document.prepare(con.create_table("docs", table), "doc", {"k"}, "k_", Fallbacks("d"))
    expr = t.select(t.i, key=distinct_key(doc, t, "k"))
    keys = [r["key"] for r in sorted(expr.to_pyarrow().to_pylist(), key=lambda r: r["i"])]
    python = [normalise_distinct(v) for v in values]
    assert [k is None for k in keys] == [p is None for p in python]
    for a in range(len(values)):
        for b in range(len(values)):
            if python[a] is not None and python[b] is not None:
                assert (keys[a] == keys[b]) == (python[a] == python[b]), (values[a], values[b])
