"""Routing and the SLA in a real store (SQLite file and PostgreSQL): new MQLs are routed in
the transaction that qualified them, the round-robin cursor survives restarts, members'
availability and capacity count, breaches fire once and re-route."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from helpers import at, identify, message, page, track
from qualify.errors import QualifyError
from qualify.model import load_model
from qualify.service.feedback import record_action
from qualify.service.ingest import Ingestor
from qualify.service.rescore import activate_model
from qualify.service.routing import (
    assign_lead,
    check_sla,
    list_members,
    reroute_lead,
    route_pending,
    set_available,
)
from qualify.store.tables import accounts, leads, roster_seats, routings, sla_breaches

FIXTURES = Path(__file__).parent.parent / "fixtures"
WORKED = (FIXTURES / "worked_example.yaml").read_text()

MODEL = """
name: routed
version: "1"
fit:
  - {name: enterprise, when: {company_size: {gte: 1000}}, points: 50}
engagement:
  - {name: demo, event: Demo Requested, points: 60}
qualification:
  mql: {score_at_least: 100}
lifecycle:
  sla: {accept_within: 24h, on_breach: reassign}
routing:
  - name: enterprise to AEs
    when: {company_size: {gte: 1000}}
    assign:
      team: enterprise
      strategy: round_robin
      account_owner: true
      members: [{name: ana, capacity: 200}, ben, chloe]
"""


def activate(engine: Engine, text: str = MODEL, when: float = at(-30)) -> None:
    activate_model(engine, load_model(text), clock=lambda: when)


def mql_messages(user: str, days: float, account: str | None = None) -> list:
    messages = [identify(user, days, company_size=5000)]
    if account is not None:
        messages.append(message(type="group", userId=user, timestamp=at(days), groupId=account))
    messages.append(track("Demo Requested", days + 0.01, user))
    return messages


def row(engine: Engine, lead_id: str) -> dict:
    with engine.connect() as conn:
        found = conn.execute(select(leads).where(leads.c.id == lead_id)).first()
    assert found is not None
    return dict(found._mapping)


def history(engine: Engine, lead_id: str) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(routings).where(routings.c.lead_id == lead_id).order_by(routings.c.id)
        ).all()
    return [dict(r._mapping) for r in rows]


def test_the_worked_example_is_routed_to_the_nurture_campaign_when_it_qualifies(
    engine: Engine,
) -> None:
    activate(engine, WORKED)
    messages = [
        identify("u1", 0, industry="financial services", company_size=800),
        track("Content Downloaded", 0.5, "u1", content_type="whitepaper", topic="compliance"),
        track("Webinar Attended", 1, "u1"),
        track("Page Viewed", 1.5, "u1"),
    ]
    messages += [page("/pricing", 2), page("/pricing", 8)]
    Ingestor(engine, clock=lambda: at(9)).ingest(messages)
    lead = row(engine, "u1")
    assert lead["stage"] == "mql"
    assert (lead["routing"], lead["nurture_campaign"], lead["owner"]) == (
        "nurture",
        "fs-compliance-track",
        None,
    )
    assert lead["sla_due_at"] is None  # no rep has to accept a nurtured lead
    (decision,) = history(engine, "u1")
    assert decision["rule"] == "financial services nurture"
    assert decision["actor"] == "system" and decision["at"] == at(9)


def test_round_robin_is_fair_over_300_leads_across_restarts_and_batches(engine: Engine) -> None:
    activate(engine)
    for part in range(3):  # three ingestors, as after restarts, each in several transactions
        messages = [m for n in range(100) for m in mql_messages(f"u{part}-{n:03d}", part)]
        Ingestor(engine, clock=lambda p=part: at(p + 0.5), batch_size=37).ingest(messages)
    with engine.connect() as conn:
        owners = Counter(
            conn.execute(select(leads.c.owner).where(leads.c.stage == "mql")).scalars()
        )
        seats = {
            m: (last, n)
            for m, last, n in conn.execute(
                select(roster_seats.c.member, roster_seats.c.last, roster_seats.c.assigned)
            )
        }
    assert set(owners) == {"ana", "ben", "chloe"}
    assert max(owners.values()) - min(owners.values()) <= 1
    assert sum(n for _, n in seats.values()) == 300
    assert max(last for last, _ in seats.values()) == 300


def test_unavailable_members_and_capacity_are_honoured(engine: Engine) -> None:
    activate(engine, MODEL.replace("{name: ana, capacity: 200}", "{name: ana, capacity: 1}"))
    set_available(engine, "ben", False, actor="ops", note="on leave", clock=lambda: at(0))
    Ingestor(engine, clock=lambda: at(1)).ingest(
        [m for n in range(4) for m in mql_messages(f"u{n}", 0.5)]
    )
    with engine.connect() as conn:
        owners = dict(conn.execute(select(leads.c.id, leads.c.owner)).all())
    assert owners == {"u0": "ana", "u1": "chloe", "u2": "chloe", "u3": "chloe"}
    assert "ana: at capacity (1 open MQLs)" in history(engine, "u2")[0]["skipped"]
    assert "ben: unavailable" in history(engine, "u1")[0]["skipped"]
    ben = next(m for m in list_members(engine) if m["member"] == "ben")
    assert ben == {
        "member": "ben",
        "teams": ["enterprise"],
        "available": False,
        "note": "on leave",
        "open_mqls": 0,
        "capacity": None,
        "in_model": True,
    }


def test_a_lead_nobody_can_take_waits_unrouted_and_is_routed_when_someone_is_back(
    engine: Engine,
) -> None:
    activate(engine)
    for name in ("ana", "ben", "chloe"):
        set_available(engine, name, False, actor="ops", clock=lambda: at(0))
    Ingestor(engine, clock=lambda: at(1)).ingest(mql_messages("u1", 0.5))
    lead = row(engine, "u1")
    assert (lead["stage"], lead["routing"], lead["owner"]) == ("mql", "unrouted", None)
    assert route_pending(engine, clock=lambda: at(1.5)) == 0
    assert len(history(engine, "u1")) == 1  # trying again is not recorded again
    set_available(engine, "ben", True, actor="ops", clock=lambda: at(2))
    assert route_pending(engine, clock=lambda: at(2)) == 1
    lead = row(engine, "u1")
    assert (lead["owner"], lead["sla_due_at"]) == ("ben", at(3))


def test_the_first_assignee_owns_the_account_and_gets_its_next_leads(engine: Engine) -> None:
    activate(engine)
    Ingestor(engine, clock=lambda: at(1)).ingest(
        mql_messages("u1", 0.1, "acme") + mql_messages("u2", 0.2) + mql_messages("u3", 0.3, "acme")
    )
    with engine.connect() as conn:
        owners = dict(conn.execute(select(leads.c.id, leads.c.owner)).all())
        acme = conn.execute(select(accounts.c.owner).where(accounts.c.id == "acme")).scalar()
    assert acme == owners["u1"]
    assert owners["u3"] == owners["u1"] != owners["u2"]
    assert history(engine, "u3")[0]["strategy"] == "account_owner"


def test_an_sla_breach_fires_once_and_reroutes_to_someone_else(engine: Engine) -> None:
    activate(engine)
    Ingestor(engine, clock=lambda: at(1)).ingest(mql_messages("u1", 0.5) + mql_messages("u2", 0.6))
    first = row(engine, "u1")
    assert first["owner"] == "ana" and first["sla_due_at"] == at(2)
    record_action(engine, "u2", "accept", actor="ben", clock=lambda: at(1.5))
    assert check_sla(engine, clock=lambda: at(1.9)).breached == 0  # not due yet
    report = check_sla(engine, clock=lambda: at(2.1))
    assert (report.breached, report.reassigned) == (1, 1)  # u2 was accepted in time
    again = check_sla(engine, clock=lambda: at(2.2))
    assert again.breached == 0  # once
    lead = row(engine, "u1")
    assert lead["owner"] == "chloe"  # ben had the turn after ana, but not ana again
    assert lead["sla_due_at"] == at(3.1) and lead["sla_breached_at"] is None
    with engine.connect() as conn:
        breaches = [dict(r._mapping) for r in conn.execute(select(sla_breaches))]
    assert [(b["lead_id"], b["member"], b["due_at"]) for b in breaches] == [("u1", "ana", at(2))]
    rerouted = history(engine, "u1")[-1]
    assert rerouted["reason"].startswith("SLA breached by ana: ")
    assert rerouted["member"] == "chloe"


def test_manual_assignment_and_rerouting_are_recorded(engine: Engine) -> None:
    activate(engine)
    Ingestor(engine, clock=lambda: at(1)).ingest(mql_messages("u1", 0.5))
    decision = assign_lead(engine, "u1", "zoe", actor="manager", clock=lambda: at(1.2))
    assert decision.member == "zoe" and decision.strategy == "manual"
    assert row(engine, "u1")["owner"] == "zoe"
    again = reroute_lead(engine, "u1", actor="manager", clock=lambda: at(1.3))
    assert again.member == "ben"  # ana had the last turn of the team
    kinds = [(h["actor"], h["member"], h["strategy"]) for h in history(engine, "u1")]
    assert kinds == [
        ("system", "ana", "round_robin"),
        ("manager", "zoe", "manual"),
        ("manager", "ben", "round_robin"),
    ]
    record_action(engine, "u1", "accept", actor="ben", clock=lambda: at(1.4))
    with pytest.raises(QualifyError, match="only MQLs are routed"):
        reroute_lead(engine, "u1", actor="manager", clock=lambda: at(1.5))


def test_a_recycled_lead_qualifies_again_when_its_wait_ends_without_a_new_event(
    engine: Engine,
) -> None:
    from qualify.service.rescore import requalify_recycled

    text = MODEL.replace(
        "  sla: {accept_within: 24h, on_breach: reassign}",
        "  sla: {accept_within: 24h, on_breach: reassign}\n  recycle: {requalify_after: 2d}",
    )
    activate(engine, text)
    Ingestor(engine, clock=lambda: at(1)).ingest(mql_messages("u1", 0.5))
    record_action(engine, "u1", "reject", actor="ana", reason="not now", clock=lambda: at(1.5))
    assert requalify_recycled(engine, now=at(3)).new_mqls == 0  # the wait ends at day 3.5
    assert row(engine, "u1")["stage"] == "nurture"
    assert requalify_recycled(engine, now=at(4)).new_mqls == 1
    lead = row(engine, "u1")
    assert (lead["stage"], lead["qualified_at"]) == ("mql", at(3.5))
    assert lead["owner"] == "ben"  # routed again: ana had the last turn
    assert requalify_recycled(engine, now=at(5)).leads == 0  # looked at once


def test_an_anonymous_mql_that_merges_into_a_known_lead_keeps_its_owner_and_sla(
    engine: Engine,
) -> None:
    activate(engine)
    anonymous = [
        message(
            type="identify", anonymousId="a1", timestamp=at(0.5), traits={"company_size": 5000}
        ),
        message(type="track", anonymousId="a1", event="Demo Requested", timestamp=at(0.6)),
    ]
    Ingestor(engine, clock=lambda: at(1)).ingest(anonymous)
    before = row(engine, "anon:a1")
    assert before["owner"] == "ana" and before["sla_due_at"] == at(2)
    known = [message(type="identify", userId="k1", anonymousId="a1", timestamp=at(1.5))]
    Ingestor(engine, clock=lambda: at(1.6)).ingest(known)
    lead = row(engine, "k1")
    assert (lead["stage"], lead["owner"], lead["routing"], lead["sla_due_at"]) == (
        "mql",
        "ana",
        "assign",
        at(2),
    )
    assert [h["member"] for h in history(engine, "k1")] == ["ana"]  # the history moved too


def test_an_answer_after_the_due_time_records_the_breach_and_ends_the_sla(
    engine: Engine,
) -> None:
    activate(engine)
    Ingestor(engine, clock=lambda: at(1)).ingest(mql_messages("u1", 0.5) + mql_messages("u2", 0.6))
    record_action(engine, "u1", "accept", actor="ana", clock=lambda: at(2))  # exactly on time
    record_action(engine, "u2", "accept", actor="ben", clock=lambda: at(2.5))  # late
    with engine.connect() as conn:
        breaches = [(b.lead_id, b.member) for b in conn.execute(select(sla_breaches))]
    assert breaches == [("u2", "ben")]
    assert row(engine, "u2")["sla_due_at"] is None
    assert check_sla(engine, clock=lambda: at(3)).breached == 0


def test_waiting_mqls_each_get_their_turn_and_a_requalified_lead_loses_its_old_owner(
    engine: Engine,
) -> None:
    from qualify.service.rescore import requalify_recycled

    text = (
        MODEL
        + "  - {name: small, when: {company_size: {lt: 10}}, assign: {team: x, members: [xo]}}\n"
    )
    text = text.replace(
        "  sla: {accept_within: 24h, on_breach: reassign}",
        "  sla: {accept_within: 24h, on_breach: reassign}\n  recycle: {requalify_after: 1d}",
    )
    activate(engine, text)
    Ingestor(engine, clock=lambda: at(1)).ingest(mql_messages("u1", 0.5))
    record_action(engine, "u1", "reject", actor="ana", reason="later", clock=lambda: at(1.2))
    for name in ("ana", "ben", "chloe", "xo"):
        set_available(engine, name, False, actor="ops", clock=lambda: at(1.3))
    assert requalify_recycled(engine, now=at(2.5)).new_mqls == 1
    lead = row(engine, "u1")
    assert (lead["stage"], lead["routing"], lead["owner"], lead["sla_due_at"]) == (
        "mql",
        "unrouted",
        None,
        None,
    )
    assert check_sla(engine, clock=lambda: at(4)).breached == 0  # ana's old SLA is gone
    Ingestor(engine, clock=lambda: at(3)).ingest(
        [m for n in range(3) for m in mql_messages(f"w{n}", 2.9)]
    )
    set_available(engine, "chloe", True, actor="ops", clock=lambda: at(3.5))
    placed = [route_pending(engine, clock=lambda: at(4), limit=2) for _ in range(2)]
    assert placed == [2, 2]  # two a round, the least recently tried first
    with engine.connect() as conn:
        owners = dict(conn.execute(select(leads.c.id, leads.c.owner)).all())
    assert owners == {"u1": "chloe", "w0": "chloe", "w1": "chloe", "w2": "chloe"}
