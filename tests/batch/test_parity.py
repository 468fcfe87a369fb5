"""Batch equals live: random models and histories, scored by the live engine (`qualify
score`'s code) and by the compiled plan on DuckDB, must agree on every lead — fit,
engagement, score, flags, tier, grade and each rule's points (exact, or within 1e-9 where
decay sums floating-point terms in another order)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import assert_batch_equals_live, examples
from qualify.batch.engine import Backend, BatchRun
from qualify.batch.inputs import from_messages
from qualify.batch.plan import RULE_PREFIX
from qualify.core.activity import ActivityEvent, decode_message
from qualify.core.scoring import CompiledModel
from qualify.model import (
    AllOf,
    AnyOf,
    Compare,
    Criteria,
    EngagementRule,
    FitRule,
    LifecycleSettings,
    Qualification,
    ScoringModel,
)
from qualify.service.stateless import score_events

DAY = 86400.0
T0 = 1_772_323_200.0  # 2026-03-01
NAMES = ("a", "b", "page")
PATHS = ("/pricing", "/Pricing/x", "/docs", "/blog", "/straße")
CATEGORIES = ("red", "Red", " red ", "green", 1, 1.0, True, "", None, ["x"])
WHERE = (
    None,
    Compare("path", "starts_with", "/pricing"),
    Compare("path", "contains", "SS"),
    AnyOf((Compare("category", "in", ("red", "green")), Compare("n", "gte", 10))),
    Compare("n", "between", (5, 50)),
)
WHEN = (
    Compare("industry", "equals", "software"),
    Compare("size", "gte", 100),
    Compare("account.plan", "in", ("pro", "enterprise")),
    AllOf((Compare("title", "contains", "vp"), Compare("country", "not_in", ("us",)))),
    Compare("email", "exists", True),
)


@st.composite
def engagement_rules(draw: st.DrawFn, index: int) -> EngagementRule:
    kind = draw(st.sampled_from(("each", "once", "distinct", "times")))
    times = draw(st.integers(1, 4)) if kind == "times" else None
    within = draw(st.sampled_from((None, 0.5, 3, 7))) if kind == "times" else None
    distinct = (
        "category" if kind == "distinct" or (kind == "times" and draw(st.booleans())) else None
    )
    return EngagementRule(
        name=f"e{index}",
        events=tuple(draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=2, unique=True))),
        points=draw(st.sampled_from((-15, -5, 5, 10, 30, 2.5))),
        where=draw(st.sampled_from(WHERE)),
        max_points=draw(st.sampled_from((None, 12, 40))),
        times=times,
        within=within * DAY if within else None,
        distinct=distinct,
        once=kind == "once",
        expires_after=draw(st.sampled_from((None, 5 * DAY, 20 * DAY))),
    )


@st.composite
def models(draw: st.DrawFn) -> ScoringModel:
    engagement = tuple(draw(engagement_rules(i)) for i in range(draw(st.integers(1, 5))))
    fit = tuple(
        FitRule(f"f{i}", draw(st.sampled_from(WHEN)), draw(st.sampled_from((10, 25, -10))))
        for i in range(draw(st.integers(0, 3)))
    )
    names = [r.name for r in fit + engagement]  # type: ignore[operator]
    return ScoringModel(
        name="random",
        version="1",
        fit=fit,
        engagement=engagement,
        qualification=Qualification(
            mql=Criteria(score_at_least=draw(st.sampled_from((10, 30, 60)))),
            pql=Criteria(all=tuple(draw(st.lists(st.sampled_from(names), max_size=2)))),
            tiers=(
                ("hot", Criteria(score_at_least=50, fit_at_least=10)),
                ("warm", Criteria(engagement_at_least=20)),
                ("any", Criteria(any=tuple(names))),
            ),
            grades=(("A", Criteria(fit_at_least=25)), ("B", Criteria(fit_at_least=10))),
        ),
        lifecycle=LifecycleSettings(),
        routing=(),
        half_life=draw(st.sampled_from((None, 10 * DAY, 30 * DAY))),
    )


@st.composite
def histories(draw: st.DrawFn) -> list[ActivityEvent]:
    """Several people, some first seen anonymously and identified later (identify, alias,
    or an event carrying both ids, perhaps another person's anonymous id: a merge); traits
    and an account; duplicates of a messageId; events with and without the properties
    rules read."""
    events = []
    for i in range(draw(st.integers(0, 40))):
        person = draw(st.integers(0, 3))
        anonymous = draw(st.booleans())
        ids = {"anonymousId": f"anon{person}"} if anonymous else {"userId": f"user{person}"}
        if not anonymous and draw(st.integers(0, 3)) == 0:
            ids["anonymousId"] = f"anon{draw(st.integers(0, 3))}"
        days = draw(st.integers(0, 40)) / 2  # half days: plenty of ties
        kinds = ("track", "track", "page", "identify", "group", "dup", "alias")
        kind = draw(st.sampled_from(kinds))
        message: dict = {"messageId": f"m{i:03d}", "timestamp": T0 + days * DAY, **ids}
        if kind == "dup" and i > 0:
            message["messageId"] = f"m{draw(st.integers(0, i - 1)):03d}"
            kind = "track"
        if kind == "dup":
            kind = "track"
        if kind in ("track", "page"):
            props: dict = {"path": draw(st.sampled_from(PATHS))}
            category = draw(st.sampled_from(CATEGORIES))
            if category is not None:
                props["category"] = category
            if draw(st.booleans()):
                props["n"] = draw(st.sampled_from((3, "12", "1,000", 40.5, True)))
            message.update(type=kind, properties=props)
            if kind == "track":
                message["event"] = draw(st.sampled_from(("a", "A", "b", "c")))
        elif kind == "identify":
            message.update(
                type="identify",
                userId=f"user{person}",
                anonymousId=f"anon{person}" if draw(st.booleans()) else None,
                traits={
                    "industry": draw(st.sampled_from(("Software", "retail"))),
                    "size": draw(st.sampled_from((50, "250", "1,200"))),
                    "title": draw(st.sampled_from(("VP Sales", "engineer"))),
                    "country": draw(st.sampled_from(("US", "DE"))),
                    **({"email": f"p{person}@x.io"} if draw(st.booleans()) else {}),
                },
            )
        elif kind == "alias":
            message.update(
                type="alias",
                userId=f"user{person}",
                previousId=draw(st.sampled_from(("anon0", "anon1", "user2"))),
            )
        else:
            message.update(
                type="group",
                groupId=f"acct{person % 2}",
                traits={"plan": draw(st.sampled_from(("Pro", "starter")))},
            )
        events.append(decode_message({k: v for k, v in message.items() if v is not None}))
    return events


def batch_scores(
    backend: Backend, model: ScoringModel, events: list[ActivityEvent], as_of: float
) -> dict:
    inputs = from_messages(model, events, as_of)
    rows = BatchRun.of_inputs(model, backend, inputs, as_of).rows()
    return {row["lead_id"]: row for row in rows}


def assert_agree(
    backend: Backend, model: ScoringModel, events: list[ActivityEvent], as_of: float
) -> None:
    live = {lead: score for lead, score, _ in score_events(CompiledModel(model), events, as_of)}
    assert_batch_equals_live(model, live, batch_scores(backend, model, events, as_of))


AS_OF = st.integers(0, 50).map(lambda d: T0 + d / 2 * DAY)


@pytest.mark.slow
def test_every_engine_agrees_with_the_live_engine(backend: Backend) -> None:
    @settings(
        max_examples=examples(backend, 120),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(models(), histories(), AS_OF)
    def check(model: ScoringModel, events: list[ActivityEvent], as_of: float) -> None:
        assert_agree(backend, model, events, as_of)

    check()


def _pricing(day: float, message_id: str, user: str = "u1") -> ActivityEvent:
    return decode_message(
        {
            "type": "page",
            "userId": user,
            "messageId": message_id,
            "timestamp": T0 + day * DAY,
            "properties": {"path": "/pricing"},
        }
    )


@pytest.mark.parametrize(
    ("days", "holds"),
    [((0, 7), True), ((0, 7.5), False), ((0, 0), True), ((0, 3, 11), True), ((0, 8, 16), False)],
)
def test_window_bounds_and_ties_match_the_seeds_example(
    backend: Backend, days: tuple, holds: bool
) -> None:
    """ "Pricing page twice within 7 days": a window is inclusive at both ends."""
    rule = EngagementRule(
        "pricing twice",
        ("page",),
        30,
        Compare("path", "starts_with", "/pricing"),
        times=2,
        within=7 * DAY,
        expires_after=30 * DAY,
    )
    model = ScoringModel(
        "m", "1", (), (rule,), Qualification(), LifecycleSettings(), (), half_life=60 * DAY
    )
    events = [_pricing(d, f"m{i}") for i, d in enumerate(days)]
    as_of = T0 + 20 * DAY
    assert_agree(backend, model, events, as_of)
    row = batch_scores(backend, model, events, as_of)["u1"]
    assert (row[RULE_PREFIX + "pricing twice"] is not None) is holds


@pytest.mark.postgres
def test_postgres_sends_only_leads_with_rare_values_to_the_live_engine(
    postgres_backend: Backend,
) -> None:
    """PostgreSQL cannot call Python: a lead whose path is `/straße` (casefolded by Python,
    not by `lower()`) is scored by the live engine; a lead with plain ASCII data is not."""
    rule = EngagementRule("ss", ("page",), 10, Compare("path", "contains", "SS"))
    model = ScoringModel("m", "1", (), (rule,), Qualification(), LifecycleSettings(), ())
    events = [
        _pricing(1, "m1", user="plain"),
        decode_message(
            {
                "type": "page",
                "userId": "odd",
                "messageId": "m2",
                "timestamp": T0 + DAY,
                "properties": {"path": "/straße"},
            }
        ),
    ]
    as_of = T0 + 5 * DAY
    run = BatchRun.of_inputs(model, postgres_backend, from_messages(model, events, as_of), as_of)
    rows = {row["lead_id"]: row for row in run.rows()}
    assert run.live_leads == 1
    assert rows["odd"]["rule:ss"] == 10.0  # "straße".casefold() contains "ss"
    assert rows["plain"]["rule:ss"] is None


def test_an_empty_history_scores_no_leads(backend: Backend) -> None:
    """No messages: no leads, on every engine (empty tables keep their column types)."""
    fit = FitRule("f", Compare("industry", "equals", "software"), 10)
    rule = EngagementRule("e", ("a",), 5)
    model = ScoringModel("m", "1", (fit,), (rule,), Qualification(), LifecycleSettings(), ())
    assert batch_scores(backend, model, [], T0) == {}
