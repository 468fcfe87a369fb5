"""Every predicate operator, on traits and properties, with the documented edge cases."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qualify.core.predicates import compile_predicate
from qualify.errors import ModelError
from qualify.model.predicates import parse_predicate
from qualify.model.problems import Problems
from qualify.model.source import load_located


def holds(yaml_text: str, data: dict) -> bool:
    doc, problems = load_located(yaml_text)
    assert doc is not None and not problems
    collected = Problems(doc)
    predicate = parse_predicate(doc.value, (), collected)
    if collected.items:
        raise ModelError("p.yaml", yaml_text, collected.items)
    return compile_predicate(predicate)(data)


@pytest.mark.parametrize(
    ("condition", "data", "expected"),
    [
        # scalar equals: case-insensitive text, numbers numeric, booleans
        ("{industry: financial services}", {"industry": "Financial Services"}, True),
        ("{industry: financial services}", {"industry": "finance"}, False),
        ("{industry: financial services}", {}, False),
        ("{company_size: 800}", {"company_size": "800"}, True),
        ("{company_size: 800}", {"company_size": 800.0}, True),
        ("{company_size: '800'}", {"company_size": 800}, True),
        ("{active: true}", {"active": True}, True),
        ("{active: true}", {"active": "TRUE"}, True),
        ("{active: true}", {"active": False}, False),
        ("{country: NO}", {"country": "no"}, True),
        ("{country: NO}", {"country": False}, False),
        ("{email: null}", {}, True),
        ("{email: null}", {"email": "a@b.c"}, False),
        # in / not_in
        ("{country: {in: [US, GB]}}", {"country": "gb"}, True),
        ("{country: {in: [US, GB]}}", {"country": "DE"}, False),
        ("{country: {not_in: [US, GB]}}", {"country": "DE"}, True),
        ("{country: {not_in: [US, GB]}}", {"country": "us"}, False),
        ("{country: {not_in: [US, GB]}}", {}, True),
        ("{size: {in: [10, 20]}}", {"size": "20"}, True),
        # contains / starts_with / ends_with
        ("{job_title: {contains: student}}", {"job_title": "PhD Student"}, True),
        ("{job_title: {contains: student}}", {"job_title": "CFO"}, False),
        ("{path: {starts_with: /pricing}}", {"path": "/Pricing/enterprise"}, True),
        ("{path: {starts_with: /pricing}}", {"path": "/blog/pricing"}, False),
        ("{email: {ends_with: '@acme.com'}}", {"email": "Ana@ACME.com"}, True),
        ("{email: {ends_with: '@acme.com'}}", {"email": "ana@acme.co"}, False),
        # matches: a regular expression as written (case-sensitive unless it says so)
        ("{job_title: {matches: '^VP\\b'}}", {"job_title": "VP Finance"}, True),
        ("{job_title: {matches: '^VP\\b'}}", {"job_title": "vp finance"}, False),
        ("{job_title: {matches: '(?i)^vp'}}", {"job_title": "VP Finance"}, True),
        ("{code: {matches: '^4\\d\\d$'}}", {"code": 404}, True),
        # between (inclusive) and comparisons; numbers given as text compare as numbers
        ("{company_size: {between: [200, 2000]}}", {"company_size": "200"}, True),
        ("{company_size: {between: [200, 2000]}}", {"company_size": 2000}, True),
        ("{company_size: {between: [200, 2000]}}", {"company_size": "2001"}, False),
        ("{company_size: {between: [200, 2000]}}", {"company_size": "large"}, False),
        ("{revenue: {gt: 10}}", {"revenue": "10.5"}, True),
        ("{revenue: {gt: 10}}", {"revenue": 10}, False),
        ("{revenue: {gte: 10}}", {"revenue": 10}, True),
        ("{revenue: {lt: 10}}", {"revenue": "9"}, True),
        ("{revenue: {lt: 10}}", {"revenue": True}, False),
        ("{revenue: {lte: 10}}", {"revenue": "10"}, True),
        ("{revenue: {gte: 5, lt: 10}}", {"revenue": 7}, True),
        ("{revenue: {gte: 5, lt: 10}}", {"revenue": 10}, False),
        # exists: the empty text counts as missing
        ("{phone: {exists: true}}", {"phone": "+47 1234"}, True),
        ("{phone: {exists: true}}", {"phone": ""}, False),
        ("{phone: {exists: false}}", {}, True),
        ("{phone: {exists: false}}", {"phone": None}, True),
        # dotted keys reach nested values; a flat key with dots wins
        ("{company.size: {gte: 100}}", {"company": {"size": 150}}, True),
        ("{company.size: {gte: 100}}", {"company": {"size": 50}}, False),
        ("{company.size: {gte: 100}}", {"company.size": 150}, True),
        ("{company.size: {gte: 100}}", {"company": "acme"}, False),
        # lists in the data: any element
        ("{tags: vip}", {"tags": ["new", "VIP"]}, True),
        ("{tags: {not_in: [spam]}}", {"tags": ["new", "spam"]}, False),
        # several keys all hold; any / all / not combine
        ("{industry: software, country: US}", {"industry": "software", "country": "US"}, True),
        ("{industry: software, country: US}", {"industry": "software", "country": "DE"}, False),
        ("{any: [{country: US}, {country: GB}]}", {"country": "GB"}, True),
        ("{any: [{country: US}, {country: GB}]}", {"country": "DE"}, False),
        ("{all: [{a: 1}, {b: 2}]}", {"a": 1, "b": 2}, True),
        ("{all: [{a: 1}, {b: 2}]}", {"a": 1, "b": 3}, False),
        ("{not: {job_title: {contains: student}}}", {"job_title": "CFO"}, True),
        ("{not: {job_title: {contains: student}}}", {"job_title": "student"}, False),
        ("{equals_test: {equals: 5}}", {"equals_test": "5"}, True),
    ],
)
def test_operator(condition: str, data: dict, expected: bool) -> None:
    assert holds(condition, data) is expected


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(-3, 3, allow_nan=False),
    st.sampled_from(["US", "us", "Us ", "1", "1.0", " 2", "true", "False", "", "x"]),
)


@given(expected=st.lists(_scalars, max_size=5), value=_scalars)
def test_in_holds_when_any_element_equals(expected: list, value: object) -> None:
    """`in` looks text up in a set; it must agree with `equals` against each element."""
    from qualify.core.predicates import _element_test

    either = any(_element_test("equals", e)(value) for e in expected)
    assert _element_test("in", expected)(value) is either
