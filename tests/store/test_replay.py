"""Leads, events and ledger agree: replaying the stored events rebuilds every stored lead.

Random message streams (known and anonymous visitors, identifies that merge, aliases, groups,
late and duplicate messages) are ingested in random batches at a moving clock; then, for every
lead, a from-scratch replay of all stored events (in arrival order, which fixes how identities
merged) must give the stored traits, state and score (as of the lead's `scored_at`), and the
ledger must sum to its points.
"""

from __future__ import annotations

import random

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, select

from qualify.core.leadbook import LeadBook
from qualify.core.scoring import CompiledModel, score_state
from qualify.model import load_model
from qualify.service.demo import demo_model_text
from qualify.service.ingest import Ingestor
from qualify.service.rescore import activate_model
from qualify.store import repository as repo
from qualify.store.tables import accounts, events, identities, leads, ledger, metadata
from qualify.store.versions import active_version_id

T0 = 1_772_323_200.0
DAY = 86400.0
# the demo model, and a fit rule on the account's traits: a group message changes the
# profile of every lead linked to the account
MODEL = load_model(
    demo_model_text().replace(
        "\nfit:\n",
        "\nfit:\n  - name: software account\n    when: {account.industry: software}\n"
        "    points: 5\n",
        1,
    )
)
EVENTS = (
    ("page", None, {"path": "/pricing"}),
    ("page", None, {"path": "/product/reporting"}),
    ("page", None, {"path": "/product/api"}),
    ("page", None, {"path": "/careers"}),
    ("track", "Content Downloaded", {"content_type": "whitepaper"}),
    ("track", "Webinar Attended", {}),
    ("track", "Email Opened", {}),
    ("track", "Email Clicked", {}),
    ("track", "Account Created", {}),
    ("track", "Teammate Invited", {}),
    ("track", "Feature Used", {"feature": "reports"}),
    ("track", "Demo Requested", {}),
)
TRAITS = (
    {"industry": "software"},
    {"company_size": "500"},
    {"job_title": "CFO"},
    {"industry": "retail", "country": "NO"},
    {"email": "x@gmail.com"},
)


def stream(seed: int, size: int) -> list[dict]:
    rng = random.Random(seed)
    users = [f"u{i}" for i in range(4)]
    anons = [f"a{i}" for i in range(4)]
    messages: list[dict] = []
    for i in range(size):
        ts = T0 + rng.uniform(0, 60) * DAY
        roll = rng.random()
        who: dict = {}
        if rng.random() < 0.6:
            who["userId"] = rng.choice(users)
        else:
            who["anonymousId"] = rng.choice(anons)
        if roll < 0.12:
            who["userId"] = rng.choice(users)
            if rng.random() < 0.5:
                who["anonymousId"] = rng.choice(anons)
            msg = {"type": "identify", "traits": rng.choice(TRAITS), **who}
        elif roll < 0.16:
            msg = {
                "type": "alias",
                "previousId": rng.choice(anons + users),
                "userId": rng.choice(users),
            }
        elif roll < 0.22:
            msg = {
                "type": "group",
                "groupId": rng.choice(("g1", "g2")),
                "traits": {"industry": rng.choice(("software", "retail"))},
                **who,
            }
        else:
            kind, name, props = rng.choice(EVENTS)
            msg = {"type": kind, "properties": props, **who}
            if name:
                msg["event"] = name
        msg.update(messageId=f"m{seed}-{i}", timestamp=ts)
        messages.append(msg)
        if rng.random() < 0.05:  # an SDK retry
            messages.append(dict(msg))
    return messages


def wipe(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(delete(table))


def check_replay(engine: Engine) -> int:
    compiled = CompiledModel(MODEL)
    with engine.connect() as conn:
        rows = conn.execute(select(events.c.payload, events.c.ts).order_by(events.c.id)).all()
        stored = repo.load_leads(
            conn, conn.execute(select(leads.c.id)).scalars().all(), len(compiled.rules)
        )
        sums: dict = {}
        for lead_id, rule, total in conn.execute(
            select(ledger.c.lead_id, ledger.c.rule, func.sum(ledger.c.points)).group_by(
                ledger.c.lead_id, ledger.c.rule
            )
        ):
            if abs(total) > 1e-9:
                sums.setdefault(lead_id, {})[rule] = total
    book = LeadBook(compiled)
    replayed = [repo.stored_event(payload, ts) for payload, ts in rows]  # in arrival order
    for event in replayed:
        book.apply(event)
    assert set(book.leads) == set(stored)
    for lead_id, item in stored.items():
        record, status = book.leads[lead_id], item.status
        assert record.traits.values == item.record.traits.values, lead_id
        assert record.state == item.record.state, lead_id
        assert record.account_id == item.record.account_id, lead_id
        assert record.first_seen == item.record.first_seen, lead_id
        profile = book.profile(record, status.scored_at)
        result = score_state(compiled, profile, record.state, status.scored_at)
        assert (result.fit, result.mql, result.tier, result.grade) == (
            status.fit,
            status.mql,
            status.tier,
            status.grade,
        ), lead_id
        assert abs(result.score - status.score) < 1e-9, lead_id
        points = result.rule_points()
        assert points.keys() == status.rule_points.keys(), lead_id
        for rule, value in points.items():
            assert abs(value - status.rule_points[rule]) < 1e-9, (lead_id, rule)
            assert abs(sums.get(lead_id, {}).get(rule, 0.0) - value) < 1e-9, (lead_id, rule)
    return len(stored)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 10**6),
    size=st.integers(1, 120),
    batch=st.integers(1, 60),
    step=st.integers(1, 20),
)
def test_replaying_stored_events_rebuilds_every_lead(
    engine: Engine, seed: int, size: int, batch: int, step: int
) -> None:
    """Any split into transactions (batch) and steps within them (step) stores the same."""
    from qualify.core.activity import decode_message

    wipe(engine)
    activate_model(engine, MODEL, clock=lambda: T0)
    messages = [decode_message(m) for m in stream(seed, size)]
    clock = iter(T0 + d * DAY for d in range(30, 10_000, 3))
    ingestor = Ingestor(engine, clock=lambda: next(clock), batch_size=batch, step_size=step)
    ingestor.ingest(messages)
    assert check_replay(engine) >= 1


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 10**6), size=st.integers(1, 120), step=st.integers(1, 20))
def test_one_transaction_attributes_every_point_to_a_message(
    engine: Engine, seed: int, size: int, step: int
) -> None:
    """At one clock, every change of a new lead's points is a ledger row naming the message
    that caused it (event, profile or merge): none is left over for `time` to settle."""
    from qualify.core.activity import decode_message

    wipe(engine)
    activate_model(engine, MODEL, clock=lambda: T0)
    messages = [decode_message(m) for m in stream(seed, size)]
    ingestor = Ingestor(engine, clock=lambda: T0 + 30 * DAY, batch_size=10**6, step_size=step)
    ingestor.ingest(messages)
    with engine.connect() as conn:
        reasons = conn.execute(select(ledger.c.reason, ledger.c.points)).all()
    assert [(r, p) for r, p in reasons if r == "time"] == []
    assert check_replay(engine) >= 1


def stored_leads(engine: Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {row.id: dict(row._mapping) for row in conn.execute(select(leads))}


def versions_named(rows: dict[str, dict], engine: Engine) -> dict[str, dict]:
    """Rows with the active model's id as `active` (ids differ between two runs on
    PostgreSQL, whose sequences a wipe does not reset)."""
    with engine.connect() as conn:
        active = active_version_id(conn)
    names = {active: "active", None: None}
    columns = ("model_version_id", "state_version_id")
    return {
        lead: {**row, **{c: names.get(row[c], row[c]) for c in columns}}
        for lead, row in rows.items()
    }


def demo_stream(seed: int, leads_count: int) -> list:
    """Demo leads' messages (profiles, accounts, intent) interleaved in time order, as a
    live site sends them: most leads qualify, are routed, change tier."""
    from qualify.service.demo import DemoSpec, generate

    spec = DemoSpec(leads=leads_count, days=30, accounts=max(1, leads_count // 4))
    messages = generate(spec, rng=random.Random(seed), now=T0 + 30 * DAY)
    return sorted(messages, key=lambda e: (e.timestamp, e.message_id))


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 10**6),
    size=st.integers(1, 120),
    batch=st.integers(1, 8),
    demo=st.booleans(),
    workers=st.integers(1, 3),
)
def test_what_an_ingestor_remembers_writes_the_same_rows(
    engine: Engine, seed: int, size: int, batch: int, demo: bool, workers: int
) -> None:
    """An ingestor that keeps its leads between transactions updates only the columns that
    changed since it read or wrote them (the HTTP service's many small transactions). Every
    column of every lead must be what a fresh ingestor per transaction writes: that one
    reads each lead back from the store and writes whole rows. Random streams merge and
    alias; demo streams qualify, route and change tiers.

    With several `workers` (server processes on one store) the ingestors take turns, and
    now and then a salesperson accepts or rejects an MQL between them: each ingestor must
    forget what the others wrote, and keep the rest."""
    from qualify.core.activity import decode_message

    if demo:
        messages = demo_stream(seed, 12)[: size * 3]
    else:
        messages = [decode_message(m) for m in stream(seed, size)]
    rows = []
    for remember in (True, False):
        wipe(engine)
        activate_model(engine, MODEL, clock=lambda: T0)
        hours = iter(T0 + d * 3600 for d in range(30 * 24, 10**6))
        clock = hours.__next__
        ingestors = [Ingestor(engine, clock=clock) for _ in range(workers)]
        for turn, start in enumerate(range(0, len(messages), batch)):
            ingestor = ingestors[turn % workers]
            if not remember:
                ingestor = Ingestor(engine, clock=clock)
            ingestor.ingest_batch(messages[start : start + batch])
            if remember:
                assert_memory_is_stored(engine, ingestor, alone=workers == 1)
            if workers > 1 and turn % 3 == 2:
                answer_an_mql(engine, clock, "accept" if turn % 2 else "reject")
        rows.append((versions_named(stored_leads(engine), engine), stored_accounts(engine)))
    assert rows[0] == rows[1]


def stored_accounts(engine: Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {row.id: dict(row._mapping) for row in conn.execute(select(accounts))}


def answer_an_mql(engine: Engine, clock, action: str) -> None:
    """A salesperson's answer to the first MQL, as a third process would write it."""
    from qualify.service.feedback import record_action

    with engine.connect() as conn:
        lead_id = conn.execute(
            select(leads.c.id).where(leads.c.stage == "mql").order_by(leads.c.id)
        ).scalar()
    if lead_id is not None:
        record_action(engine, lead_id, action, actor="rep", reason="not now", clock=clock)


def assert_memory_is_stored(engine: Engine, ingestor: Ingestor, *, alone: bool) -> None:
    """Every lead the ingestor keeps in memory is stored exactly so, every column, except
    leads another ingestor merged away since (none when it is `alone`): no identity leads
    to those any more."""
    warm = ingestor.warm
    assert warm is not None
    stored = stored_leads(engine)
    with engine.connect() as conn:
        reachable = set(conn.execute(select(identities.c.lead_id)).scalars())
    for lead_id, record in warm.book.leads.items():
        if lead_id not in stored:
            assert not alone and lead_id not in reachable, lead_id
            continue
        row = dict(stored[lead_id])
        assert row.pop("written_generation") <= warm.generation
        expected = repo.lead_values(repo.StoredLead(record, warm.statuses[lead_id]))
        assert as_json(row) == as_json(expected), lead_id
    stored_as = stored_accounts(engine)
    for account_id, account in warm.book.accounts.items():
        row = stored_as[account_id]
        held = {"traits": account.traits.values, "trait_stamps": account.traits.to_json()}
        assert as_json({k: row[k] for k in held}) == as_json(held), account_id


def as_json(row: dict) -> object:
    """A row as its columns' JSON: tuples and lists alike, bytes as hex."""
    return orjson.loads(orjson.dumps(row, default=bytes.hex, option=orjson.OPT_NON_STR_KEYS))
