"""`LeadBook.fit` and `LeadBook.profile_moments` remember their answer on the lead's record
(the store's writer scores each lead at every transaction); what they remember must never
differ from asking afresh, whatever changes in between: traits set again with the same or
another value, older messages, the account link, the account's own traits, the moment."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from qualify.core.activity import decode_message
from qualify.core.leadbook import LeadBook
from qualify.core.scoring import CompiledModel, fit_part
from qualify.model import (
    Compare,
    Criteria,
    FitRule,
    LifecycleSettings,
    Qualification,
    ScoringModel,
)

DAY = 86400.0
T0 = 1_772_323_200.0  # 2026-03-01

MODEL = ScoringModel(
    name="memo",
    version="1",
    fit=(
        FitRule("title", Compare("title", "equals", "cfo"), 20),
        FitRule("size", Compare("size", "gte", 100), 10),
        FitRule("account industry", Compare("account.industry", "equals", "banking"), 15),
        FitRule("account size", Compare("account.size", "gte", 500), 5),
    ),
    engagement=(),
    qualification=Qualification(mql=Criteria(score_at_least=30)),
    lifecycle=LifecycleSettings(),
    routing=(),
)


@st.composite
def steps(draw: st.DrawFn) -> list[tuple[str, object]]:
    """Identify and group messages for one user (two accounts, members besides it), each
    followed by the moment to ask at."""
    out: list[tuple[str, object]] = []
    for i in range(draw(st.integers(1, 14))):
        ts = T0 + draw(st.integers(0, 10)) * DAY
        kind = draw(st.sampled_from(["identify", "group", "member"]))
        if kind == "identify":
            traits = draw(
                st.dictionaries(
                    st.sampled_from(["title", "size"]),
                    st.one_of(st.sampled_from(["cfo", "cto"]), st.integers(50, 150)),
                    max_size=2,
                )
            )
            message = {"type": "identify", "userId": "u", "traits": traits}
        else:
            traits = draw(
                st.dictionaries(
                    st.sampled_from(["industry", "size"]),
                    st.one_of(st.sampled_from(["banking", "retail"]), st.integers(100, 900)),
                    max_size=2,
                )
            )
            user = "u" if kind == "group" else "other"
            group = draw(st.sampled_from(["acme", "globex"]))
            message = {"type": "group", "userId": user, "groupId": group, "traits": traits}
        message |= {"messageId": f"m{i}", "timestamp": ts}
        out.append(("message", message))
        out.append(("ask", T0 + draw(st.integers(-1, 11)) * DAY + draw(st.sampled_from([0, 1]))))
    return out


@settings(max_examples=300, deadline=None)
@given(steps())
def test_the_remembered_fit_and_moments_equal_asking_afresh(
    script: list[tuple[str, object]],
) -> None:
    book = LeadBook(CompiledModel(MODEL))
    for what, value in script:
        if what == "message":
            assert isinstance(value, dict)
            book.apply(decode_message(value, received_at=T0 + 20 * DAY))
            continue
        assert isinstance(value, float)
        record = book.leads.get("u")
        if record is None:
            continue
        for moment in (value, None):  # the moment asked, then the whole profile
            fresh = fit_part(book.compiled, book.profile(record, moment))
            assert book.fit(record, moment) == fresh
        fresh_record = dataclasses.replace(record, fit_memo=None, moments_memo=None)
        assert book.profile_moments(record) == book.profile_moments(fresh_record)


def test_a_record_scored_under_another_model_gets_that_model_s_fit() -> None:
    book = LeadBook(CompiledModel(MODEL))
    book.apply(
        decode_message(
            {
                "type": "identify",
                "userId": "u",
                "messageId": "m1",
                "timestamp": T0,
                "traits": {"title": "cfo"},
            },
            received_at=T0,
        )
    )
    record = book.leads["u"]
    assert book.fit(record, T0 + DAY)[0] == 20
    other = dataclasses.replace(
        MODEL, fit=(FitRule("title", Compare("title", "equals", "cfo"), 7),)
    )
    assert LeadBook(CompiledModel(other)).fit(record, T0 + DAY)[0] == 7
