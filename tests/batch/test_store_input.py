"""Batch scoring from the store's own tables (SQLite and PostgreSQL) equals the live engine
over the same messages: identity as the store resolved it, traits as it kept them."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import Engine

from helpers import assert_batch_equals_live
from qualify.batch.engine import Backend, run_store
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
