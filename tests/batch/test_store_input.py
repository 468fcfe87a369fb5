"""Batch scoring from the store's own tables (SQLite and PostgreSQL) equals the live engine
over the same messages: identity as the store resolved it, traits as it kept them."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from helpers import assert_batch_equals_live, examples
from qualify.batch.engine import Backend, BatchRun, open_backend, run_store
from qualify.batch.inputs import stored_source
from qualify.core.activity import decode_line
from qualify.core.scoring import CompiledModel
from qualify.model import ScoringModel, load_model
from qualify.service.demo import DemoSpec, demo_model_text, generate
from qualify.service.ingest import Ingestor
from qualify.service.rescore import activate_model
from qualify.service.stateless import score_events
from qualify.store import open_engine
from qualify.store.tables import metadata
from strategies import AS_OF, CATEGORIES, DAY, PATHS, T0, models

NOW = 1_790_000_000.0
MODEL = load_model(demo_model_text())


def skip_a_mismatch(backend: Backend, engine: Engine) -> None:
    if backend.name == "postgres" and engine.dialect.name != "postgresql":
        pytest.skip("the postgres engine scores a PostgreSQL store in place, not SQLite")


def test_scores_from_the_store_equal_the_live_engine(engine: Engine, backend: Backend) -> None:
    """Every store (SQLite, PostgreSQL) on every engine; PostgreSQL scores its own store in
    place (the plan reads its `events` table)."""
    skip_a_mismatch(backend, engine)
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
    skip_a_mismatch(backend, engine)
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


def _store_and_score(
    engine: Engine,
    backend: Backend,
    model: ScoringModel,
    lines: list[bytes],
    as_of: float,
    stored_with: ScoringModel | None = None,
) -> tuple[dict[str, Any], dict[str, Any], BatchRun]:
    """Messages stored as sent (`qualify ingest`, the HTTP API), then scored from the store
    by the batch engine and, from the same lines, by the live engine. The store keeps every
    message whatever model it scores with (`stored_with`, by default the one scored)."""
    messages = [decode_line(line, keep_raw=True) for line in lines]
    activate_model(engine, stored_with or model, clock=lambda: NOW)
    Ingestor(engine, clock=lambda: NOW).ingest(messages)
    run = run_store(model, backend, engine, as_of)
    batch = {row["lead_id"]: row for row in run.rows()}
    live = {lead: s for lead, s, _ in score_events(CompiledModel(model), messages, as_of)}
    return live, batch, run


def test_a_non_ascii_event_name_counts_as_the_live_engine_counts_it(
    engine: Engine, backend: Backend
) -> None:
    """Rules match the casefolded name, which SQL's `lower()` is not for every text: the
    lead is scored by the live engine. PostgreSQL in place once dropped such an event as
    matching no rule before flagging it, and scored `Straße Visit` zero."""
    skip_a_mismatch(backend, engine)
    model = load_model(
        "name: n\nversion: 1\nengagement:\n"
        "  - name: street\n    event: Strasse Visit\n    points: 10\n"
        "  - name: plain\n    event: Demo\n    points: 3\n"
        "qualification:\n  mql: {score_at_least: 10}\n"
    )
    sent = [("a", "Straße Visit"), ("b", "STRASSE VISIT"), ("c", "Ünknown"), ("d", " demo ")]
    lines = [
        orjson.dumps(
            {"type": "track", "userId": u, "event": e, "messageId": f"m{i}", "timestamp": NOW - 9}
        )
        for i, (u, e) in enumerate(sent)
    ]
    live, batch, run = _store_and_score(engine, backend, model, lines, NOW)
    assert_batch_equals_live(model, live, batch)
    assert [live[u].score for u in "abcd"] == [10, 10, 0, 3]
    if reads_the_store(backend, engine):  # others receive names casefolded in Python
        assert run.live_leads == 2  # the non-ASCII names' leads, and only those


def test_a_profile_as_of_a_moment_holds_what_was_known_then(
    engine: Engine, backend: Backend
) -> None:
    """As of a moment, a lead's profile holds the traits known then, and its account only
    once it was linked to it: scored half-way, the account's and the later traits' points
    are left out, from the store's stamps as the live engine leaves them out."""
    skip_a_mismatch(backend, engine)
    model = load_model(
        "name: n\nversion: 1\nfit:\n"
        "  - name: paying account\n    when: {account.plan: pro}\n    points: 20\n"
        "  - name: senior\n    when: {title: {contains: VP}}\n    points: 7\n"
        "engagement:\n  - name: demo\n    event: Demo\n    points: 3\n"
        "qualification:\n  mql: {score_at_least: 30}\n"
    )
    day = 86400.0
    sent = [
        {"type": "identify", "userId": "a", "traits": {"title": "Engineer"}, "timestamp": 0},
        {"type": "group", "userId": "b", "groupId": "acme", "traits": {"plan": "pro"}},
        {"type": "track", "userId": "a", "event": "Demo", "timestamp": 1},
        {"type": "group", "userId": "a", "groupId": "acme", "timestamp": 5},
        {"type": "identify", "userId": "a", "traits": {"title": "VP Sales"}, "timestamp": 6},
    ]
    lines = []
    for i, message in enumerate(sent):
        at = NOW - 10 * day + message.pop("timestamp", 0) * day
        lines.append(orjson.dumps({**message, "messageId": f"m{i}", "timestamp": at}))
    for days_ago, a_fit, b_fit in ((7, 0, 20), (4.5, 20, 20), (1, 27, 20)):
        live, batch, _ = _store_and_score(engine, backend, model, lines, NOW - days_ago * day)
        assert_batch_equals_live(model, live, batch)
        assert (batch["a"]["fit"], batch["b"]["fit"]) == (a_fit, b_fit), days_ago


STORED_EVENTS = ("a", "A ", "b", "Straße", "STRASSE", "ǅ")
NUMBER_TEXT = ("12", "1e1", "1.50E1", "-0.0", "12.000", "1000000000000000000000", '"12"')


@st.composite
def stored_lines(draw: st.DrawFn) -> list[bytes]:
    """Messages as senders write them: any spacing, numbers spelt many ways, a page's name
    beside its properties, non-ASCII event names, and now and then a key sent twice (the
    live engine, like any JSON decoder that keeps the last, reads the second)."""
    lines = []
    for i in range(draw(st.integers(0, 25))):
        person = draw(st.integers(0, 3))
        kind = draw(st.sampled_from(("track", "track", "page", "screen")))
        props = {"path": draw(st.sampled_from(PATHS))}
        category = draw(st.sampled_from(CATEGORIES))
        if category is not None:
            props["category"] = category
        body = orjson.dumps(props).decode()[1:-1]
        if draw(st.booleans()):
            body += ',"n":' + draw(st.sampled_from(NUMBER_TEXT))
        if draw(st.integers(0, 4)) == 0:  # a key twice: the first is not what counts
            twice = draw(st.sampled_from(("category", "path", "n")))
            body = (
                f'"{twice}":'
                + orjson.dumps(draw(st.sampled_from(CATEGORIES))).decode()
                + ", "
                + body
            )
        message = {
            "type": kind,
            "userId": f"user{person}",
            "messageId": f"m{i:03d}",
            "timestamp": T0 + draw(st.integers(0, 40)) / 2 * DAY,
        }
        if kind == "track":
            message["event"] = draw(st.sampled_from(STORED_EVENTS))
        elif draw(st.booleans()):
            message["name"] = draw(st.sampled_from(("Pricing", "", "Docs")))
        text = orjson.dumps(message, option=orjson.OPT_INDENT_2 if draw(st.booleans()) else 0)
        properties = draw(st.sampled_from(("{" + body + "}", "{ " + body + " }", None, "{}")))
        if properties is not None:
            text = text[:-1] + b', "properties": ' + properties.encode() + b"}"
        lines.append(text)
    return lines


def reads_the_store(backend: Backend, engine: Engine) -> bool:
    """Whether the store's messages reach the engine undecoded by Python: any engine on a
    store ADBC opens (a PostgreSQL server reads its `jsonb`; DuckDB reads a SQLite file's
    messages, for Spark too)."""
    return stored_source(engine) is not None


def empty(engine: Engine) -> None:
    """Every table of the store emptied (its migrations stay): one store for many examples."""
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.mark.slow
def test_messages_stored_as_sent_score_as_the_live_engine_scores_them(
    engine: Engine, backend: Backend
) -> None:
    """Scored from the store, every engine agrees with the live engine lead by lead, on
    random models and on messages written every way a sender may write them: those that
    read the store's messages themselves (DuckDB a SQLite store's, PostgreSQL its own in
    place) and those given them decoded in Python."""
    skip_a_mismatch(backend, engine)

    @settings(
        max_examples=examples(backend, 40),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(models(), stored_lines(), AS_OF, st.booleans())
    def check(model: ScoringModel, lines: list[bytes], as_of: float, strasse: bool) -> None:
        if strasse:  # a rule on a name only casefolding reaches
            first = model.engagement[0]
            first = dataclasses.replace(first, events=(*first.events, "strasse"))
            model = dataclasses.replace(model, engagement=(first, *model.engagement[1:]))
        empty(engine)
        # a drawn model has no text to store: the store scores with the demo model
        live, batch, _ = _store_and_score(engine, backend, model, lines, as_of, MODEL)
        assert_batch_equals_live(model, live, batch)

    check()


@pytest.mark.parametrize("folder", ["plain folder", "odd #?% folder"])
def test_a_sqlite_store_anywhere_is_scored_on_duckdb(tmp_path: Path, folder: str) -> None:
    """DuckDB reads a SQLite store's file itself (a URI); a path a URI cannot carry as it
    is (`?`, `#`, `%`) is read through Python instead: same scores either way."""
    (tmp_path / folder).mkdir()
    store = open_engine(f"sqlite:///{tmp_path / folder / 'qualify.db'}")
    backend = open_backend("duckdb")
    try:
        lines = [
            orjson.dumps(
                {"type": "track", "userId": u, "event": "Demo", "messageId": u, "timestamp": NOW}
            )
            for u in ("a", "b")
        ]
        model = load_model(
            "name: n\nversion: 1\nengagement:\n  - name: demo\n    event: Demo\n    points: 3\n"
            "qualification:\n  mql: {score_at_least: 10}\n"
        )
        live, batch, _ = _store_and_score(store, backend, model, lines, NOW)
        assert_batch_equals_live(model, live, batch)
        assert [batch[u]["score"] for u in "ab"] == [3, 3]
        assert (stored_source(store) is None) == ("#" in folder)
    finally:
        backend.close()
        store.dispose()


def test_a_store_adbc_cannot_open_is_named_in_the_error() -> None:
    """DuckDB reads a PostgreSQL store's events through ADBC (libpq), beside the store's
    own connection: when that fails, the error names the store, without its password."""
    from sqlalchemy import create_engine

    from qualify.batch.inputs import stored_rows
    from qualify.errors import StoreError

    store = create_engine("postgresql+psycopg://someone:secret@127.0.0.1:9/qbench")
    assert stored_source(store) == "postgresql://someone:secret@127.0.0.1:9/qbench"
    shown = r"store postgresql://someone:\*\*\*@127.0.0.1:9/qbench: "
    with pytest.raises(StoreError, match=shown), stored_rows(store):
        pass
