"""Ingestion into a real store (SQLite file and PostgreSQL): scores, ledger, stages, identity."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from helpers import DAY, at, identify, message, page, track
from qualify.core.activity import ActivityEvent, decode_line
from qualify.core.lifecycle import Stage
from qualify.errors import LeadNotFound, NoActiveModel, TransitionNotAllowed
from qualify.model import load_model
from qualify.service.feedback import record_action
from qualify.service.ingest import Ingestor
from qualify.service.queries import explain_lead, funnel, list_leads
from qualify.service.rescore import activate_model, rescore_all
from qualify.store.tables import events, identities, leads, ledger, transitions

FIXTURES = Path(__file__).parent.parent / "fixtures"
WORKED = (FIXTURES / "worked_example.yaml").read_text()


def activate(engine: Engine, text: str = WORKED, when: float = at(-30)) -> None:
    activate_model(engine, load_model(text), clock=lambda: when)


def seed_messages(user: str = "u1", second_pricing: float = 8.0) -> list:
    return [
        identify(user, 0, industry="financial services", company_size=800),
        track("Content Downloaded", 0.5, user, content_type="whitepaper", topic="compliance"),
        track("Webinar Attended", 1, user),
        page("/pricing", 2, user),
        page("/pricing", second_pricing, user),
    ]


def lead_row(engine: Engine, lead_id: str) -> dict:
    with engine.connect() as conn:
        row = conn.execute(select(leads).where(leads.c.id == lead_id)).first()
    assert row is not None, lead_id
    return dict(row._mapping)


def ledger_by_rule(engine: Engine, lead_id: str) -> dict[str, float]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(ledger.c.rule, func.sum(ledger.c.points))
            .where(ledger.c.lead_id == lead_id)
            .group_by(ledger.c.rule)
        ).all()
    return {rule: total for rule, total in rows if abs(total) > 1e-9}


def test_ingest_needs_an_active_model(engine: Engine) -> None:
    with pytest.raises(NoActiveModel):
        Ingestor(engine)


def test_worked_example_becomes_an_mql_at_the_second_pricing_visit(engine: Engine) -> None:
    activate(engine)
    report = Ingestor(engine, clock=lambda: at(20)).ingest(seed_messages())
    assert (report.ingested, report.new_mqls, report.leads_touched) == (5, 1, 1)
    row = lead_row(engine, "u1")
    assert row["score"] == 105 and row["stage"] == "mql" and row["mql"]
    assert row["qualified_at"] == at(8) and row["stage_at"] == at(8)
    assert ledger_by_rule(engine, "u1") == row["rule_points"]
    with engine.connect() as conn:
        (change,) = conn.execute(select(transitions)).all()
    assert (change.from_stage, change.to_stage, change.action, change.actor) == (
        "lead",
        "mql",
        "qualify",
        "system",
    )
    assert change.details["score"] == 105
    assert set(change.details["rules"]) == set(row["rule_points"])
    assert change.model_version_id is not None


def test_eight_days_apart_is_not_an_mql(engine: Engine) -> None:
    activate(engine)
    Ingestor(engine, clock=lambda: at(20)).ingest(seed_messages(second_pricing=10))
    row = lead_row(engine, "u1")
    assert (row["score"], row["stage"]) == (75, "lead")


def test_the_mql_moment_is_exact_even_when_the_window_has_closed_since(engine: Engine) -> None:
    """Criteria held on day 8 only while both visits were in one window; a late batch still
    records the moment they first held."""
    activate(engine, WORKED.replace("score_at_least: 100", "score_at_least: 105"))
    ingestor = Ingestor(engine, clock=lambda: at(40), batch_size=2)
    ingestor.ingest(seed_messages())
    row = lead_row(engine, "u1")
    assert row["stage"] == "mql" and row["qualified_at"] == at(8)


def test_duplicates_are_ignored_in_a_batch_and_across_batches(engine: Engine) -> None:
    activate(engine)
    ingestor = Ingestor(engine, clock=lambda: at(20))
    messages = seed_messages()
    first = ingestor.ingest(messages + messages[:2])
    again = ingestor.ingest(messages)
    assert (first.ingested, first.duplicates) == (5, 2)
    assert (again.ingested, again.duplicates) == (0, 5)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar() == 5
    assert lead_row(engine, "u1")["score"] == 105


def test_anonymous_history_merges_into_the_known_lead(engine: Engine) -> None:
    activate(engine)
    ingestor = Ingestor(engine, clock=lambda: at(20), batch_size=3)
    anonymous = [
        message(type="page", anonymousId="a1", properties={"path": "/pricing"}, timestamp=at(1)),
        message(type="page", anonymousId="a1", properties={"path": "/pricing"}, timestamp=at(3)),
        message(type="track", anonymousId="a1", event="Webinar Attended", timestamp=at(3.5)),
    ]
    ingestor.ingest(anonymous)
    assert lead_row(engine, "anon:a1")["score"] == 50
    ingestor.ingest(
        [
            identify("u9", 4, anonymous="a1", industry="Financial Services", company_size="900"),
            track(
                "Content Downloaded", 5, "u9", content_type="whitepaper", topic="compliance audit"
            ),
        ]
    )
    row = lead_row(engine, "u9")
    assert row["score"] == 105 and row["stage"] == "mql"
    with engine.connect() as conn:
        assert conn.execute(select(leads).where(leads.c.id == "anon:a1")).first() is None
        owners = set(conn.execute(select(events.c.lead_id)).scalars())
        keys = dict(conn.execute(select(identities.c.value, identities.c.lead_id)).all())
    assert owners == {"u9"} and keys == {"a1": "u9", "u9": "u9"}
    assert explain_lead(engine, "anon:a1").lead["id"] == "u9"  # a merged id still finds it
    assert explain_lead(engine, "a1").lead["id"] == "u9"
    assert ledger_by_rule(engine, "u9") == row["rule_points"]


def test_alias_merges_a_previous_id(engine: Engine) -> None:
    activate(engine)
    ingestor = Ingestor(engine, clock=lambda: at(20))
    ingestor.ingest([track("Webinar Attended", 1, "old-id"), identify("new-id", 2)])
    ingestor.ingest([message(type="alias", previousId="old-id", userId="new-id", timestamp=at(3))])
    assert lead_row(engine, "new-id")["rule_points"] == {"webinar attended": 20}
    assert explain_lead(engine, "old-id").lead["id"] == "new-id"  # the old id still finds it
    with pytest.raises(LeadNotFound):
        explain_lead(engine, "never-seen")


ACCOUNT_FIT = WORKED.replace(
    "when: {industry: financial services}", "when: {account.industry: financial services}"
)


def group_message(user: str, day: float, industry: str, account: str = "acme") -> ActivityEvent:
    traits = {"industry": industry}
    return message(type="group", userId=user, groupId=account, timestamp=at(day), traits=traits)


def test_group_links_an_account_whose_traits_fit_rules_can_read(engine: Engine) -> None:
    activate(engine, ACCOUNT_FIT)
    Ingestor(engine, clock=lambda: at(20)).ingest(
        [
            identify("u1", 0),
            message(
                type="group",
                userId="u1",
                groupId="acme",
                timestamp=at(1),
                traits={"industry": "Financial Services", "name": "Acme"},
            ),
        ]
    )
    row = lead_row(engine, "u1")
    assert row["account_id"] == "acme" and row["rule_points"] == {"target industry": 15}


def test_a_lead_scored_later_sees_what_another_member_changed_on_its_account(
    engine: Engine,
) -> None:
    """The writer remembers each lead's fit between transactions; a change to the account's
    traits (sent by another member) must not leave it stale: it shows at once (see the next
    test) and stays at the lead's next message."""
    activate(engine, ACCOUNT_FIT)
    ingestor = Ingestor(engine, clock=lambda: at(20))
    ingestor.ingest([identify("u1", 0), group_message("u1", 1, "retail")])
    assert lead_row(engine, "u1")["fit"] == 0
    ingestor.ingest([identify("u2", 2), group_message("u2", 3, "financial services")])
    ingestor.ingest([track("Webinar Attended", 4, "u1")])
    assert lead_row(engine, "u1")["rule_points"] == {"target industry": 15, "webinar attended": 20}


@pytest.mark.parametrize("held", [True, False], ids=["held-in-memory", "read-from-store"])
def test_a_change_to_an_account_rescores_its_other_members_at_once(
    engine: Engine, held: bool
) -> None:
    """u1 (90 points) waits below the bar; u2's group message makes their account a
    financial-services one, worth 15 fit points to every member: u1 is an MQL from that
    moment, without a message of its own, and the points are booked to u2's message."""
    activate(engine, ACCOUNT_FIT)
    ingestor = Ingestor(engine, clock=lambda: at(20))
    ingestor.ingest(
        [
            identify("u1", 0, company_size=800),
            group_message("u1", 0.2, "retail"),
            track("Content Downloaded", 0.5, "u1", content_type="whitepaper", topic="compliance"),
            track("Webinar Attended", 1, "u1"),
            page("/pricing", 2, "u1"),
            page("/pricing", 3, "u1"),
            identify("u3", 0),
            group_message("u3", 0.3, "retail", account="other"),
        ]
    )
    before = lead_row(engine, "u1")
    assert (before["score"], before["stage"]) == (90, "lead")
    change = group_message("u2", 5, "financial services")
    writer = ingestor if held else Ingestor(engine, clock=lambda: at(20))
    writer.ingest([identify("u2", 4), change])

    row = lead_row(engine, "u1")
    assert (row["fit"], row["score"], row["stage"]) == (25, 105, "mql")
    assert row["qualified_at"] == at(5)  # the moment the account changed
    with engine.connect() as conn:
        booked = conn.execute(
            select(ledger.c.reason, ledger.c.message_id, ledger.c.points).where(
                ledger.c.lead_id == "u1", ledger.c.rule == "target industry"
            )
        ).all()
    assert [tuple(b) for b in booked] == [("profile", change.message_id, 15)]
    assert lead_row(engine, "u2")["fit"] == 15
    assert lead_row(engine, "u3")["fit"] == 0  # another account's member: untouched
    # the next message of u1 changes nothing more
    writer.ingest([track("Webinar Attended", 6, "u1")])
    assert ledger_by_rule(engine, "u1")["target industry"] == 15


def test_later_traits_win_whatever_the_arrival_order(engine: Engine) -> None:
    activate(engine)
    ingestor = Ingestor(engine, clock=lambda: at(20))
    ingestor.ingest([identify("u1", 5, industry="financial services")])
    ingestor.ingest([identify("u1", 1, industry="retail", company_size=300)])
    row = lead_row(engine, "u1")
    assert row["traits"] == {"industry": "financial services", "company_size": 300}
    assert row["fit"] == 25


def test_a_number_beyond_64_bits_is_read_as_a_float_and_stored(engine: Engine) -> None:
    """A file's line may carry an integer no 64 bits hold. The HTTP API (orjson) and any
    JavaScript read it as a float; `qualify ingest` once kept it as an integer, which the
    store then could not write (the whole batch failed)."""
    activate(engine)
    lines = [
        b'{"type": "identify", "userId": "u1", "messageId": "i1", "timestamp": %d,'
        b' "traits": {"industry": "financial services", "company_size": 1%s}}'
        % (int(at(0)), b"0" * 22),
        b'{"type": "track", "userId": "u1", "event": "Webinar Attended", "messageId": "t1",'
        b' "timestamp": %d, "properties": {"seats": -9223372036854775809}}' % int(at(1)),
    ]
    messages = [decode_line(line, keep_raw=True) for line in lines]
    assert messages[0].traits["company_size"] == 1e22
    assert messages[1].properties == {"seats": -9.223372036854775809e18}
    report = Ingestor(engine, clock=lambda: at(2)).ingest(messages)
    assert report.ingested == 2
    row = lead_row(engine, "u1")
    assert row["traits"]["company_size"] == 1e22
    assert row["fit"] == 15  # the industry; 1e22 is no size between 200 and 2,000


def test_sales_actions_follow_the_lifecycle(engine: Engine) -> None:
    activate(engine)
    Ingestor(engine, clock=lambda: at(20)).ingest(seed_messages())
    with pytest.raises(TransitionNotAllowed, match="cannot `won` lead `u1`: it is in stage `mql`"):
        record_action(engine, "u1", "won", actor="ana", clock=lambda: at(21))
    change = record_action(
        engine,
        "u1",
        "accept",
        actor="ana",
        clock=lambda: at(21),
        details={"budget": "approved", "timeline": "Q3"},
    )
    assert (change.from_stage, change.to_stage) == (Stage.MQL, Stage.SQL)
    with pytest.raises(TransitionNotAllowed, match="a reason is required"):
        record_action(engine, "u1", "reject", actor="ana", clock=lambda: at(22))
    record_action(engine, "u1", "opportunity", actor="ana", clock=lambda: at(23))
    record_action(engine, "u1", "won", actor="ana", clock=lambda: at(30), details={"amount": 12000})
    row = lead_row(engine, "u1")
    assert (row["stage"], row["stage_at"]) == ("customer", at(30))
    history = explain_lead(engine, "u1").transitions
    assert [t["action"] for t in history] == ["qualify", "accept", "opportunity", "won"]
    assert history[1]["details"] == {"budget": "approved", "timeline": "Q3"}
    with pytest.raises(LeadNotFound):
        record_action(engine, "nobody", "accept", actor="ana")


def test_recycled_leads_requalify_only_after_the_waiting_period(engine: Engine) -> None:
    text = WORKED + "lifecycle:\n  recycle:\n    requalify_after: 30d\n"
    activate(engine, text)
    ingestor = Ingestor(engine, clock=lambda: at(10))
    ingestor.ingest(seed_messages())
    record_action(engine, "u1", "reject", actor="dan", reason="no budget", clock=lambda: at(10))
    assert lead_row(engine, "u1")["stage"] == "nurture"
    Ingestor(engine, clock=lambda: at(20)).ingest([track("Webinar Attended", 19, "u1")])
    assert lead_row(engine, "u1")["stage"] == "nurture"  # criteria hold, but too early
    Ingestor(engine, clock=lambda: at(45)).ingest([track("Webinar Attended", 44, "u1")])
    row = lead_row(engine, "u1")
    # the criteria held all along: the lead is an MQL again the moment its wait ended
    assert row["stage"] == "mql" and row["qualified_at"] == at(40)


def test_activating_a_new_model_rescores_every_lead(engine: Engine) -> None:
    activate(engine)
    Ingestor(engine, clock=lambda: at(20)).ingest(seed_messages("u1", 10) + seed_messages("u2", 4))
    assert lead_row(engine, "u1")["stage"] == "lead"
    cheaper = WORKED.replace("version: 1", "version: 2").replace("points: 20", "points: 50")
    report = activate_model(engine, load_model(cheaper), clock=lambda: at(25))
    assert (report.leads, report.new_mqls) == (2, 1)
    row = lead_row(engine, "u1")
    assert (row["score"], row["stage"], row["qualified_at"]) == (105, "mql", at(25))
    assert ledger_by_rule(engine, "u1") == row["rule_points"]
    assert lead_row(engine, "u2")["qualified_at"] == at(4)  # history is not rewritten


def test_refresh_applies_the_passing_of_time(engine: Engine) -> None:
    activate(engine, WORKED + "decay:\n  engagement_half_life: 10d\n")
    Ingestor(engine, clock=lambda: at(8)).ingest(seed_messages())
    before = lead_row(engine, "u1")
    rescore_all(engine, rebuild=False, now=at(18))
    after = lead_row(engine, "u1")
    assert after["engagement"] == pytest.approx(before["engagement"] / 2, rel=1e-12)
    assert after["scored_at"] == at(18)
    assert ledger_by_rule(engine, "u1") == pytest.approx(after["rule_points"])


def test_queries_list_and_count(engine: Engine) -> None:
    activate(engine)
    Ingestor(engine, clock=lambda: at(20)).ingest(
        seed_messages("u1") + seed_messages("u2", 10) + seed_messages("u3")
    )
    rows = list_leads(engine, stage="mql")
    assert [r["id"] for r in rows] == ["u1", "u3"]
    counts = funnel(engine)
    assert counts["by_stage"]["mql"] == 2 and counts["by_stage"]["lead"] == 1
    assert counts["ever"]["mql"] == 2 and counts["events"] == 15
    explanation = explain_lead(engine, "u1").to_dict()
    pricing = next(
        c for c in explanation["contributions"] if c["rule"] == "pricing page twice in a week"
    )
    assert pricing["points"] == 30
    assert [e["timestamp"][:10] for e in pricing["events"]] == ["2026-03-09"]
    assert DAY > 0


def test_the_mql_moment_waits_for_the_profile_that_made_it(engine: Engine) -> None:
    """Engagement alone is 80; the identify on day 20 brings the fit. The moment is day 20
    however the messages are batched."""
    activate(engine)
    messages = seed_messages()[1:] + [
        identify("u1", 20, industry="financial services", company_size=800)
    ]
    Ingestor(engine, clock=lambda: at(21), batch_size=100).ingest(messages)
    assert lead_row(engine, "u1")["qualified_at"] == at(20)


def test_the_mql_moment_is_the_same_when_batched_differently(engine: Engine) -> None:
    activate(engine)
    messages = seed_messages()[1:] + [
        identify("u1", 20, industry="financial services", company_size=800)
    ]
    Ingestor(engine, clock=lambda: at(21), batch_size=1).ingest(messages)
    assert lead_row(engine, "u1")["qualified_at"] == at(20)


def test_a_lead_scored_by_another_model_is_explained_after_refresh(engine: Engine) -> None:
    """An activation that stopped half-way leaves leads scored by the previous model."""
    from qualify.errors import QualifyError
    from qualify.store.versions import save_version, set_active

    activate(engine)
    Ingestor(engine, clock=lambda: at(20)).ingest(seed_messages())
    extra = WORKED.replace("version: 1", "version: 2").replace(
        "engagement:\n", "engagement:\n  - name: demo\n    event: Demo Requested\n    points: 5\n"
    )
    with engine.begin() as conn:  # the new version is active, but no lead was rescored
        set_active(conn, save_version(conn, load_model(extra), "test", at(21)), at(21))
    with pytest.raises(QualifyError, match="run `qualify refresh`"):
        explain_lead(engine, "u1")
    rescore_all(engine, rebuild=False, now=at(22))
    assert explain_lead(engine, "u1").score.score == 105


@pytest.mark.parametrize("batch_size", [1, 100])
def test_a_repeated_identify_does_not_move_the_mql_moment(engine: Engine, batch_size: int) -> None:
    """SDKs send the same traits again and again; the trait counts from its first message."""
    activate(engine)
    repeat = identify("u1", 20, industry="financial services", company_size=800)
    Ingestor(engine, clock=lambda: at(21), batch_size=batch_size).ingest([*seed_messages(), repeat])
    assert lead_row(engine, "u1")["qualified_at"] == at(8)


def test_what_a_process_remembers_between_batches_yields_to_other_writers(
    engine: Engine,
) -> None:
    """An ingestor keeps the leads of its last transaction in memory; a sales action (or any
    other writer) in between must win over that memory, not be overwritten by it."""
    activate(engine)
    ingestor = Ingestor(engine, clock=lambda: at(20))
    ingestor.ingest(seed_messages(second_pricing=5))
    assert lead_row(engine, "u1")["stage"] == "mql"
    record_action(
        engine, "u1", "disqualify", actor="ana", reason="competitor", clock=lambda: at(20)
    )
    ingestor.ingest([track("Webinar Attended", 9, "u1")])
    row = lead_row(engine, "u1")
    assert row["stage"] == "disqualified"
    assert row["score"] == 125  # and the new webinar counted: 105 + 20
    ingestor.ingest([track("Webinar Attended", 10, "u1")])  # the memory is good again
    assert lead_row(engine, "u1")["score"] == 145
    assert lead_row(engine, "u1")["stage"] == "disqualified"


def test_a_lead_scored_by_an_older_model_is_rebuilt_when_a_message_comes(engine: Engine) -> None:
    """While an activation is still rescoring (or after one stopped half-way), a message for
    a lead it has not reached must be scored with the new model over all the lead's events."""
    from qualify.store.database import writing
    from qualify.store.versions import save_version, set_active

    activate(engine)
    Ingestor(engine, clock=lambda: at(20)).ingest(seed_messages(second_pricing=5))
    richer = WORKED.replace("version: 1", "version: 2").replace(
        "qualification:",
        "  - name: any page\n    event: page\n    points: 1\nqualification:",
    )
    model = load_model(richer)
    with writing(engine) as conn:  # activated, but no lead rescored yet
        set_active(conn, save_version(conn, model, "test", at(21)), at(21))
    Ingestor(engine, clock=lambda: at(22)).ingest([page("/docs", 21, "u1")])
    row = lead_row(engine, "u1")
    assert row["score"] == 105 + 3  # the three pages (two stored, one new) under the new rule
    assert ledger_by_rule(engine, "u1")["any page"] == 3
    reasons = {r for (r,) in _ledger_reasons(engine, "u1")}
    assert "model" in reasons


def _ledger_reasons(engine: Engine, lead_id: str) -> list:
    with engine.connect() as conn:
        return conn.execute(select(ledger.c.reason).where(ledger.c.lead_id == lead_id)).all()
