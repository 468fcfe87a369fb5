"""Batch scoring from the store's own tables (SQLite and PostgreSQL) equals the live engine
over the same messages: identity as the store resolved it, traits as it kept them."""

from __future__ import annotations

import random

import orjson
import pytest
from sqlalchemy import Engine

from helpers import assert_batch_equals_live
from qualify.batch.engine import Backend, run_store
from qualify.core.activity import decode_line
from qualify.core.scoring import CompiledModel
from qualify.model import load_model
from qualify.service.demo import DemoSpec, demo_model_text, generate
from qualify.service.ingest import Ingestor
from qualify.service.rescore import activate_model
from qualify.service.stateless import score_events

NOW = 1_790_000_000.0
MODEL = load_model(demo_model_text())


def test_scores_from_the_store_equal_the_live_engine(engine: Engine, backend: Backend) -> None:
    """Every store (SQLite, PostgreSQL) on every engine; PostgreSQL scores its own store in
    place (the plan reads its `events` table)."""
    if backend.name == "postgres" and engine.dialect.name != "postgresql":
        pytest.skip("the postgres engine scores a PostgreSQL store in place, not SQLite")
    messages = sorted(
        generate(DemoSpec(leads=60, accounts=10), rng=random.Random(7), now=NOW),
        key=lambda e: (e.timestamp, e.message_id),
    )
    activate_model(engine, MODEL, clock=lambda: NOW)
    Ingestor(engine, clock=lambda: NOW, batch_size=500).ingest(messages)
    as_of = NOW - 45 * 86400.0  # half-way: traits and events after it must not count
    run = run_store(MODEL, backend, engine, as_of)
    batch = {row["lead_id"]: row for row in run.rows()}
    assert run.live_leads == 0  # the demo's data is plain: all of it scored by the plan
    live = {lead: s for lead, s, _ in score_events(CompiledModel(MODEL), messages, as_of)}
    assert len(live) >= 60 and any(s.mql for s in live.values())
    assert_batch_equals_live(MODEL, live, batch)


def test_a_view_stored_as_it_came_has_its_name_among_its_properties(
    engine: Engine, backend: Backend
) -> None:
    """`qualify ingest` keeps each line as sent, where a page's `name` is beside its
    properties; rules see it among them (unless they carry their own), on every engine —
    PostgreSQL in place too, which once missed it and scored such rules zero."""
    if backend.name == "postgres" and engine.dialect.name != "postgresql":
        pytest.skip("the postgres engine scores a PostgreSQL store in place, not SQLite")
    model = load_model(
        "name: views\nversion: 1\nengagement:\n"
        "  - name: pricing\n    event: page\n    where: {name: Pricing}\n    points: 10\n"
        "  - name: own name\n    event: page\n    where: {name: Custom}\n    points: 3\n"
        "  - name: settings\n    event: screen\n    where: {name: Settings}\n    points: 5\n"
        "qualification:\n  mql: {score_at_least: 10}\n"
    )
    lines = [
        {"type": "page", "userId": "a", "name": "Pricing", "properties": {"path": "/p"}},
        {"type": "page", "userId": "b", "name": "Pricing"},
        {"type": "page", "userId": "c", "name": "Pricing", "properties": {"name": "Custom"}},
        {"type": "screen", "userId": "d", "name": "Settings", "properties": {}},
        {"type": "page", "userId": "e", "name": "", "properties": {"path": "/"}},
    ]
    messages = [
        decode_line(
            orjson.dumps({**m, "messageId": f"v{i}", "timestamp": NOW - 3600 + i}), keep_raw=True
        )
        for i, m in enumerate(lines)
    ]
    activate_model(engine, model, clock=lambda: NOW)
    Ingestor(engine, clock=lambda: NOW).ingest(messages)
    batch = {row["lead_id"]: row for row in run_store(model, backend, engine, NOW).rows()}
    live = {lead: s for lead, s, _ in score_events(CompiledModel(model), messages, NOW)}
    assert_batch_equals_live(model, live, batch)
    assert [live[i].score for i in "abcde"] == [10, 10, 3, 5, 0]
