"""Hypothesis strategies shared by the batch parity tests: random scoring models and
histories of Segment messages (people seen anonymously and identified later, merges, traits,
an account, duplicates), and the moment they are scored at."""

from __future__ import annotations

from hypothesis import strategies as st

from qualify.core.activity import ActivityEvent, decode_message
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


AS_OF = st.integers(0, 50).map(lambda d: T0 + d / 2 * DAY)
