"""Properties of the engine, checked on random models and histories (Hypothesis).

- the arrival order of a lead's events never changes its score;
- applying events one at a time to a stored state (saved and reloaded between events, split
  across two identities and merged) equals scoring from scratch;
- each rule earns exactly what a brute-force reading of its definition says;
- the fit score's memo never answers for a profile what the rules would not.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qualify.core.activity import decode_message
from qualify.core.predicates import compile_predicate
from qualify.core.scoring import (
    CompiledModel,
    ValuesAt,
    _fit_part,
    evaluate,
    fit_part,
    normalise_distinct,
    rule_contribution,
    score_state,
)
from qualify.core.state import LeadState
from qualify.model import (
    AllOf,
    AnyOf,
    Compare,
    Criteria,
    EngagementRule,
    FitRule,
    LifecycleSettings,
    Not,
    Qualification,
    ScoringModel,
)

DAY = 86400.0
T0 = 1_772_323_200.0  # 2026-03-01
NAMES = ("a", "b", "page")
PATHS = ("/pricing", "/pricing/x", "/docs", "/blog")
CATEGORIES = ("red", "Red", "green", "blue", None)


@st.composite
def rules(draw: st.DrawFn, index: int) -> EngagementRule:
    kind = draw(st.sampled_from(("each", "once", "distinct", "times")))
    times = draw(st.integers(1, 4)) if kind == "times" else None
    within = draw(st.sampled_from((None, 1, 3, 7))) if kind == "times" else None
    distinct = (
        "category" if kind == "distinct" or (kind == "times" and draw(st.booleans())) else None
    )
    where = Compare("path", "starts_with", "/pricing") if draw(st.booleans()) else None
    return EngagementRule(
        name=f"r{index}",
        events=tuple(draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=2, unique=True))),
        points=draw(st.sampled_from((-15, -5, 5, 10, 30, 2.5))),
        where=where,
        max_points=draw(st.sampled_from((None, 12, 40))),
        times=times,
        within=within * DAY if within else None,
        distinct=distinct,
        once=kind == "once",
        expires_after=draw(st.sampled_from((None, 5 * DAY, 20 * DAY))),
    )


@st.composite
def models(draw: st.DrawFn) -> CompiledModel:
    count = draw(st.integers(1, 5))
    engagement = tuple(draw(rules(i)) for i in range(count))
    half_life = draw(st.sampled_from((None, 10 * DAY, 30 * DAY)))
    names = [r.name for r in engagement]
    return CompiledModel(
        ScoringModel(
            name="random",
            version="1",
            fit=(),
            engagement=engagement,
            qualification=Qualification(
                mql=Criteria(score_at_least=draw(st.sampled_from((10, 30, 60)))),
                pql=Criteria(all=tuple(names[:2])),
                tiers=(("hot", Criteria(score_at_least=50)), ("any", Criteria(any=tuple(names)))),
            ),
            lifecycle=LifecycleSettings(),
            routing=(),
            half_life=half_life,
        )
    )


@st.composite
def histories(draw: st.DrawFn) -> list:
    count = draw(st.integers(0, 25))
    events = []
    for i in range(count):
        name = draw(st.sampled_from(NAMES))
        days = draw(st.integers(0, 40)) / 2  # half days: plenty of ties
        props = {"path": draw(st.sampled_from(PATHS))}
        category = draw(st.sampled_from(CATEGORIES))
        if category is not None:
            props["category"] = category
        message = {
            "userId": "u",
            "messageId": f"m{i:03d}",
            "timestamp": T0 + days * DAY,
            "properties": props,
        }
        if name == "page":
            message["type"] = "page"
        else:
            message.update(type="track", event=name.upper() if i % 2 else name)
        events.append(decode_message(message))
    return events


AS_OF = st.integers(0, 50).map(lambda d: T0 + d / 2 * DAY)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(models(), histories(), AS_OF, st.randoms(use_true_random=False))
def test_arrival_order_does_not_change_the_score(compiled, events, as_of, rng) -> None:
    shuffled = list(events)
    rng.shuffle(shuffled)
    assert evaluate(compiled, {}, events, as_of) == evaluate(compiled, {}, shuffled, as_of)


@SETTINGS
@given(models(), histories(), AS_OF, st.randoms(use_true_random=False))
def test_incremental_updates_equal_scoring_from_scratch(compiled, events, as_of, rng) -> None:
    order = list(events)
    rng.shuffle(order)
    split = rng.randint(0, len(order))
    first, second = LeadState(len(compiled.rules)), LeadState(len(compiled.rules))
    for i, event in enumerate(order):
        target = first if i < split else second
        compiled.apply(target, event)
        if rng.random() < 0.3:  # save and reload, as the store does between batches
            reloaded = LeadState.from_json(target.to_json(), len(compiled.rules))
            if target is first:
                first = reloaded
            else:
                second = reloaded
        score_state(compiled, {}, first, as_of)  # reading never changes the state
    first.merge(second)  # an anonymous history merged into the known lead
    for event in order[: len(order) // 2]:  # replays are ignored
        compiled.apply(first, event)
    incremental = score_state(compiled, {}, first, as_of, explain=True)
    assert incremental == evaluate(compiled, {}, events, as_of)


def reference_points(
    rule: EngagementRule, events: list, as_of: float, half_life: float | None
) -> float | None:
    """A rule's points by the letter of its definition, by brute force."""
    where = compile_predicate(rule.where)
    hits = sorted(
        (
            e
            for e in events
            if e.name in rule.events
            and where(e.properties)
            and e.timestamp <= as_of
            and (
                rule.distinct is None
                or normalise_distinct(e.properties.get(rule.distinct)) is not None
            )
        ),
        key=lambda e: (e.timestamp, e.message_id),
    )

    def value(e):
        return normalise_distinct(e.properties.get(rule.distinct)) if rule.distinct else None

    if rule.times is not None:
        held = []
        for k, e in enumerate(hits):
            window = [
                h
                for h in hits[: k + 1]
                if rule.within is None or e.timestamp - h.timestamp <= rule.within
            ]
            count = len({value(h) for h in window}) if rule.distinct else len(window)
            if count >= rule.times:
                held.append(e)
        earning = held[-1:]
    elif rule.once:
        earning = hits[:1]
    elif rule.distinct:
        earning, seen = [], set()
        for h in hits:
            if value(h) not in seen:
                seen.add(value(h))
                earning.append(h)
    else:
        earning = hits
    if rule.expires_after is not None:
        earning = [h for h in earning if as_of - h.timestamp <= rule.expires_after]
    if not earning:
        return None
    total = sum(
        rule.points * (0.5 ** ((as_of - h.timestamp) / half_life) if half_life else 1)
        for h in earning
    )
    if rule.max_points is not None:
        total = min(total, rule.max_points) if rule.points > 0 else max(total, -rule.max_points)
    return total


@SETTINGS
@given(models(), histories(), AS_OF)
def test_each_rule_earns_what_its_definition_says(compiled, events, as_of) -> None:
    result = evaluate(compiled, {}, events, as_of).rule_points()
    for rule in compiled.rules:
        expected = reference_points(rule, events, as_of, compiled.model.half_life)
        got = result.get(rule.name)
        if expected is None:
            assert got is None, rule
        else:
            assert got is not None and math.isclose(got, expected, abs_tol=1e-9), (rule, got)


@SETTINGS
@given(models(), histories(), AS_OF, st.randoms(use_true_random=False))
def test_values_kept_at_a_moment_equal_scoring_from_scratch(compiled, events, as_of, rng) -> None:
    """Ingestion values each new hit of a decaying `each` rule from kept terms: after every
    event, and after a merge, that must equal the rule's contribution computed afresh, to the
    last bit (the ledger would otherwise show points no message caused)."""
    order = list(events)
    rng.shuffle(order)
    values = ValuesAt(compiled, as_of)
    state, other = compiled.new_state(), compiled.new_state()
    half_life = compiled.model.half_life
    for n, event in enumerate(order):
        if n == len(order) // 2:  # the other half arrived under an anonymous id: merge it
            state.merge(other)
            values.forget("u")
        target = other if n < len(order) // 2 and n % 3 == 0 else state
        for i in compiled.apply(target, event):
            if target is other:
                continue
            kept = values.points("u", i, state.hits[i], event.timestamp)
            found = rule_contribution(compiled.rules[i], state.hits[i], as_of, half_life)
            expected = found.points if found is not None else 0.0
            if kept is None:
                assert compiled.rules[i].kind != "each" or half_life is None
            else:
                assert kept == expected


# Fit rules read some of these keys (dotted ones walk into `company`); profiles also carry
# keys no rule reads, which must not matter, and keys that are read, which must.
FIT_KEYS = ("industry", "size", "company.size", "company", "title")
PROFILE_KEYS = (*FIT_KEYS, "email", "name", "company.name")
VALUES = st.sampled_from(("Fintech", "fintech", "800", 800, 12.5, "CTO", "", None, ["cto", "x"]))


def fit_predicates() -> st.SearchStrategy:
    operands = {  # each operator with operands the model language accepts for it
        "equals": st.sampled_from(("fintech", "800", 800)),
        "contains": st.sampled_from(("fin", "80")),
        "gte": st.sampled_from((100, 12.5)),
        "exists": st.booleans(),
        "not_in": st.sampled_from((("fintech",), ("cto", 800))),
    }
    compare = st.tuples(st.sampled_from(FIT_KEYS), st.sampled_from(sorted(operands))).flatmap(
        lambda ko: operands[ko[1]].map(lambda value: Compare(ko[0], ko[1], value))
    )
    return st.recursive(
        compare,
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=3).map(lambda xs: AllOf(tuple(xs))),
            st.lists(inner, min_size=1, max_size=3).map(lambda xs: AnyOf(tuple(xs))),
            inner.map(Not),
        ),
        max_leaves=4,
    )


def profiles() -> st.SearchStrategy:
    nested = st.dictionaries(st.sampled_from(("size", "name")), VALUES, max_size=2)
    return st.dictionaries(
        st.sampled_from(PROFILE_KEYS),
        st.one_of(VALUES, nested),
        max_size=6,
    )


@SETTINGS
@given(st.lists(fit_predicates(), min_size=1, max_size=4), st.lists(profiles(), max_size=12))
@example(  # a dotted key read inside a nested value: the nested value is what differs
    [Compare("company.size", "gte", 100)], [{"company": {"size": 800}}, {"company": {"size": 12}}]
)
def test_the_fit_memo_answers_each_profile_as_its_rules_do(predicates, shown) -> None:
    compiled = CompiledModel(
        ScoringModel(
            name="fit",
            version="1",
            fit=tuple(FitRule(f"f{i}", p, 10.0 + i) for i, p in enumerate(predicates)),
            engagement=(),
            qualification=Qualification(),
            lifecycle=LifecycleSettings(),
            routing=(),
        )
    )
    for profile in shown:  # one memo for all: later profiles may be answered from it
        assert fit_part(compiled, profile) == _fit_part(compiled, profile)
