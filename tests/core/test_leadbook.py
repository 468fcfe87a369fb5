"""`LeadBook.apply_all` (the stateless scorer's way) leaves leads exactly as `apply` does,
message by message: identities and merges, traits, accounts and every rule's hits, whatever
the chunk after which pending hits are recorded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from qualify.core.activity import ActivityEvent, decode_message
from qualify.core.leadbook import LeadBook
from qualify.core.scoring import CompiledModel
from qualify.model import (
    Compare,
    Criteria,
    EngagementRule,
    LifecycleSettings,
    Qualification,
    ScoringModel,
)

DAY = 86400.0
T0 = 1_772_323_200.0  # 2026-03-01

MODEL = ScoringModel(
    name="book",
    version="1",
    fit=(),
    engagement=(
        EngagementRule(name="each a", events=("a",), points=5),
        EngagementRule(
            name="pricing",
            events=("page",),
            points=10,
            where=Compare("path", "starts_with", "/pricing"),
            times=2,
            within=7 * DAY,
        ),
        EngagementRule(name="kinds", events=("a", "b"), points=3, distinct="kind"),
    ),
    qualification=Qualification(mql=Criteria(score_at_least=20)),
    lifecycle=LifecycleSettings(),
    routing=(),
)


@st.composite
def messages(draw: st.DrawFn) -> list[ActivityEvent]:
    """Anonymous browsing, identifies that merge it (one anonymous id even claimed by two
    users), aliases, tracks carrying both ids, groups, and repeated messageIds."""
    out = []
    for i in range(draw(st.integers(0, 60))):
        person = draw(st.integers(0, 3))
        message: dict = {
            "messageId": f"m{i:03d}",
            "timestamp": T0 + draw(st.integers(0, 30)) / 2 * DAY,
        }
        if i and draw(st.integers(0, 9)) == 0:
            message["messageId"] = f"m{draw(st.integers(0, i - 1)):03d}"
        ids = draw(st.sampled_from(("user", "anon", "both")))
        if ids in ("user", "both"):
            message["userId"] = f"user{person}"
        if ids in ("anon", "both"):
            message["anonymousId"] = f"anon{draw(st.integers(0, 3))}"
        kind = draw(
            st.sampled_from(("track", "track", "page", "page", "identify", "group", "alias"))
        )
        if kind == "track":
            message.update(type="track", event=draw(st.sampled_from(("a", "B", "c"))))
            message["properties"] = {"kind": draw(st.sampled_from(("x", "X", "y", "")))}
        elif kind == "page":
            message.update(
                type="page", properties={"path": draw(st.sampled_from(("/pricing", "/docs")))}
            )
        elif kind == "identify":
            message.update(type="identify", traits={"title": draw(st.sampled_from(("vp", "cto")))})
            message.setdefault("userId", f"user{person}")
        elif kind == "group":
            message.update(type="group", groupId=f"acct{person % 2}", traits={"plan": "pro"})
        else:
            message = {
                "type": "alias",
                "messageId": message["messageId"],
                "timestamp": message["timestamp"],
                "userId": f"user{person}",
                "previousId": draw(st.sampled_from(("anon0", "anon1", "user2", "user3"))),
            }
        out.append(decode_message(message))
    return out


def snapshot(book: LeadBook) -> dict:
    """What scores read, lead by lead in the book's order."""
    return {
        "leads": [
            (
                lead_id,
                record.state.hits,
                record.traits.values,
                record.traits.stamps,
                record.traits.since,
                record.account_id,
                record.account_stamp,
            )
            for lead_id, record in book.leads.items()
        ],
        "accounts": {k: (a.traits.values, a.traits.stamps) for k, a in book.accounts.items()},
        "users": book.graph.users,
        "anonymous": book.graph.anonymous,
    }


@settings(max_examples=300, deadline=None)
@given(messages(), st.sampled_from((1, 2, 3, 1000)))
def test_apply_all_equals_applying_each_message(events: list[ActivityEvent], chunk: int) -> None:
    compiled = CompiledModel(MODEL)
    one_by_one = LeadBook(compiled, dedupe=True)
    for event in events:
        one_by_one.apply(event)
    streamed = LeadBook(compiled, dedupe=True)
    streamed.apply_all(events, chunk=chunk)
    assert snapshot(streamed) == snapshot(one_by_one)
