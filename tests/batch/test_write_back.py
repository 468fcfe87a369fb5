"""A batch engine's scores written back into the store leave it as the live engine's
rescoring does: scores, flags, stages and their moments, routing, ledger — and the live
engine, touching such a lead later, rebuilds its rule state and goes on exactly."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from helpers import page, track
from qualify.core.lifecycle import Stage
from qualify.model import load_model
from qualify.service.demo import DemoSpec, demo_model_text, generate
from qualify.service.feedback import record_action
from qualify.service.ingest import Ingestor
from qualify.service.queries import explain_lead
from qualify.service.rescore import (
    BulkEngine,
    activate_model,
    rescore_all,
    rescore_in_bulk,
)
from qualify.store import open_engine
from qualify.store.repository import ROUTING_COLUMNS
from qualify.store.tables import leads, ledger, transitions

DAY = 86400.0
NOW = 1_790_000_000.0
MODEL_A = load_model(demo_model_text())
# Other points, a lower MQL bar, and negative points that lapse: many leads change.
MODEL_B = load_model(
    demo_model_text()
    .replace("version: 1", "version: 2")
    .replace("score_at_least: 100\n  pql", "score_at_least: 80\n  pql")
    .replace("within: 7d\n    points: 30", "within: 7d\n    points: 45")
    .replace(
        "points: -20\n    max_points: 40", "points: -20\n    max_points: 40\n    expires_after: 20d"
    )
)
BULK = [
    "duckdb",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("spark", marks=[pytest.mark.spark, pytest.mark.slow]),
]
LEAD_COLUMNS = (
    *("stage", "stage_at", "recycled_at", "qualified_at", "mql", "pql", "tier", "grade"),
    *("model_version_id", "scored_at", *ROUTING_COLUMNS),
)


def _history(store: Engine) -> None:
    """The demo's leads scored by model A; some MQLs then answered by sales: rejected (to
    nurture: they may requalify after 30 days), accepted, disqualified."""
    messages = sorted(
        generate(DemoSpec(leads=80, accounts=12), rng=random.Random(11), now=NOW),
        key=lambda e: (e.timestamp, e.message_id),
    )
    activate_model(store, MODEL_A, clock=lambda: NOW - 100 * DAY)
    Ingestor(store, clock=lambda: NOW, batch_size=400).ingest(messages)
    with store.connect() as conn:
        mqls = list(
            conn.execute(
                select(leads.c.id).where(leads.c.stage == "mql").order_by(leads.c.id)
            ).scalars()
        )
    assert len(mqls) >= 6
    for lead_id, action, reason in zip(
        mqls,
        ["reject", "reject", "reject", "accept", "disqualify"],
        ["not now", "no budget", "timing", "", "competitor"],
        strict=False,
    ):
        record_action(store, lead_id, action, actor="sam", reason=reason, clock=lambda: NOW)


def _snapshot(store: Engine) -> dict[str, Any]:
    with store.connect() as conn:
        rows = {
            r.id: r
            for r in conn.execute(
                select(
                    leads.c.id,
                    leads.c.fit,
                    leads.c.engagement,
                    leads.c.score,
                    leads.c.rule_points,
                    *(leads.c[c] for c in LEAD_COLUMNS),
                )
            )
        }
        moves = sorted(
            tuple(r)
            for r in conn.execute(
                select(
                    transitions.c.lead_id,
                    transitions.c.from_stage,
                    transitions.c.to_stage,
                    transitions.c.action,
                    transitions.c.actor,
                    transitions.c.at,
                    transitions.c.model_version_id,
                )
            )
        )
        booked = {
            (r.lead_id, r.rule, r.reason): r.points
            for r in conn.execute(
                select(
                    ledger.c.lead_id,
                    ledger.c.rule,
                    ledger.c.reason,
                    func.sum(ledger.c.points).label("points"),
                ).group_by(ledger.c.lead_id, ledger.c.rule, ledger.c.reason)
            )
        }
    return {"leads": rows, "transitions": moves, "ledger": booked}


def _assert_same(bulk: dict[str, Any], live: dict[str, Any]) -> None:
    assert set(bulk["leads"]) == set(live["leads"])
    for lead_id, want in live["leads"].items():
        got = bulk["leads"][lead_id]
        assert [got._mapping[c] for c in LEAD_COLUMNS] == [
            want._mapping[c] for c in LEAD_COLUMNS
        ], lead_id
        for name in ("fit", "engagement", "score"):
            assert got._mapping[name] == pytest.approx(want._mapping[name], abs=1e-9), lead_id
        assert got.rule_points.keys() == want.rule_points.keys(), lead_id
        for rule, points in want.rule_points.items():
            assert got.rule_points[rule] == pytest.approx(points, abs=1e-9), (lead_id, rule)
    assert bulk["transitions"] == live["transitions"]
    assert set(bulk["ledger"]) ^ set(live["ledger"]) == set()
    for key, points in live["ledger"].items():
        assert bulk["ledger"][key] == pytest.approx(points, abs=1e-9), key


@pytest.fixture
def live_store(tmp_path: Path) -> Engine:
    """The same history on a SQLite store of its own, rescored by the live engine."""
    store = open_engine(f"sqlite:///{tmp_path / 'live.db'}")
    _history(store)
    return store


@pytest.mark.parametrize("bulk", BULK)
def test_activating_a_model_in_bulk_equals_the_live_engine(
    engine: Engine, live_store: Engine, bulk: str
) -> None:
    if bulk == "postgres" and engine.dialect.name != "postgresql":
        pytest.skip("the postgres engine rescores a PostgreSQL store in place, not SQLite")
    _history(engine)
    later = NOW + 31 * DAY  # the rejected leads' wait is over: they may requalify
    heard: list[tuple[str, object]] = []  # what a job (or the CLI's bar) is told, in order
    bulk_report = activate_model(
        engine,
        MODEL_B,
        clock=lambda: later,
        bulk=BulkEngine(bulk, "local[2]"),
        on_total=lambda n: heard.append(("total", n)),
        progress=lambda n: heard.append(("done", n)),
        on_phase=lambda phase: heard.append(("phase", phase)),
    )
    live_report = activate_model(live_store, MODEL_B, clock=lambda: later)
    writing = heard.index(("phase", "writing the scores back"))
    assert heard[:2] == [("total", live_report.leads), ("phase", f"scoring every lead on {bulk}")]
    assert sum(n for what, n in heard[writing:] if what == "done") == live_report.leads
    ours, theirs = _snapshot(engine), _snapshot(live_store)
    _assert_same(ours, theirs)
    assert (bulk_report.leads, bulk_report.changed, bulk_report.new_mqls) == (
        live_report.leads,
        live_report.changed,
        live_report.new_mqls,
    )
    assert bulk_report.new_mqls > 0 and bulk_report.changed > 0
    # the written-back leads wait for the live engine to rebuild their state (not the
    # recycled ones: their wait was searched, by the live engine)
    with engine.connect() as conn:
        states = dict(conn.execute(select(leads.c.id, leads.c.state_version_id)).all())
    assert sum(v is None for v in states.values()) > len(states) // 2
    recycled = [i for i, r in ours["leads"].items() if r.recycled_at is not None]
    assert recycled and all(states[i] is not None for i in recycled)
    requalified = [i for i in recycled if ours["leads"][i].stage == Stage.MQL]

    # Explaining a written-back lead rebuilds its state: every point with its events.
    stateless = sorted(i for i, v in states.items() if v is None and ours["leads"][i].score > 50)
    for lead_id in stateless[:5]:
        got, want = (
            explain_lead(engine, lead_id, now=later),
            explain_lead(live_store, lead_id, now=later),
        )
        assert got.score.contributions == want.score.contributions
        assert got.events == want.events

    # New events later: the live engine rebuilds the written-back states and goes on.
    touched = stateless[:10] + requalified[:2]
    more = [page("/pricing", 0, user=i) for i in touched] + [
        track("Demo Requested", 0, user=i) for i in touched
    ]
    more = [_at(m, later + DAY + n) for n, m in enumerate(more)]
    for store in (engine, live_store):
        Ingestor(store, clock=lambda: later + 2 * DAY, batch_size=7).ingest(more)
    _assert_same(_snapshot(engine), _snapshot(live_store))
    with engine.connect() as conn:
        rebuilt = dict(conn.execute(select(leads.c.id, leads.c.state_version_id)).all())
    assert all(rebuilt[i] is not None for i in touched)


@pytest.mark.parametrize("bulk", BULK[:2])
def test_refreshing_in_bulk_equals_the_live_engine(
    engine: Engine, live_store: Engine, bulk: str
) -> None:
    """Time passes (decay, windows, expiry) with the same model: `qualify batch --db …
    --write-back` against `qualify refresh`."""
    if bulk == "postgres" and engine.dialect.name != "postgresql":
        pytest.skip("the postgres engine rescores a PostgreSQL store in place, not SQLite")
    _history(engine)
    later = NOW + 40 * DAY
    report = rescore_in_bulk(engine, BulkEngine(bulk), remodel=False, now=later)
    live = rescore_all(live_store, rebuild=False, now=later)
    _assert_same(_snapshot(engine), _snapshot(live_store))
    assert (report.leads, report.changed, report.new_mqls) == (
        live.leads,
        live.changed,
        live.new_mqls,
    )
    assert report.changed > 0
    # ... and again, later still: stateless leads are refreshed by their state, rebuilt
    rescore_in_bulk(engine, BulkEngine(bulk), remodel=False, now=later + 10 * DAY)
    rescore_all(live_store, rebuild=False, now=later + 10 * DAY)
    _assert_same(_snapshot(engine), _snapshot(live_store))


def _at(event: Any, ts: float) -> Any:
    import msgspec

    return msgspec.structs.replace(event, timestamp=ts, message_id=f"{event.message_id}-{ts}")
