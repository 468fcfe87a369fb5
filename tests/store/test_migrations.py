"""The Alembic migrations build exactly the schema the code declares, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from qualify.errors import StoreError
from qualify.store import open_engine
from qualify.store.tables import metadata


def test_migrated_schema_matches_the_tables(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_opening_twice_is_a_no_op_and_sqlite_uses_wal(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    first = open_engine(url)
    first.dispose()
    second = open_engine(url)
    with second.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0007"
    assert {
        "leads",
        "events",
        "ledger",
        "transitions",
        "identities",
        "accounts",
        "model_versions",
    } <= set(inspect(second).get_table_names())


def test_sqlite_syncs_every_commit_unless_the_url_says_normal(tmp_path: Path) -> None:
    """Acknowledged means durable, through a power cut too: each commit syncs the WAL
    (`synchronous=FULL`) on every connection of the pool, unless the store URL trades that
    for speed; the setting is ours and never reaches the driver."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    for query, expected in (("", 2), ("?synchronous=normal", 1), ("?synchronous=FULL", 2)):
        engine = open_engine(url + query)
        assert "synchronous" not in engine.url.query
        with engine.connect() as a, engine.connect() as b:  # two connections of the pool
            for conn in (a, b):
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == expected
        engine.dispose()
    with pytest.raises(StoreError, match=r"`synchronous=off`.*synchronous=normal"):
        open_engine(url + "?synchronous=off")
    with pytest.raises(StoreError, match="synchronous_commit"):
        open_engine("postgresql://postgres@127.0.0.1:1/test?synchronous=normal", migrate=False)


def test_a_store_from_before_state_versions_keeps_its_states(tmp_path) -> None:
    """Migration 0005: a lead's stored rule state counts as built for the version that
    scored it, so upgrading a store does not make every lead rebuild (or stay stale)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import select

    from helpers import at, page, track
    from qualify.model import load_model
    from qualify.service.ingest import Ingestor
    from qualify.service.rescore import activate_model
    from qualify.store.tables import leads

    engine = open_engine(f"sqlite:///{tmp_path / 'q.db'}")
    worked = (Path(__file__).parent.parent / "fixtures" / "worked_example.yaml").read_text()
    activate_model(engine, load_model(worked), clock=lambda: at(0))
    Ingestor(engine, clock=lambda: at(2)).ingest(
        [page("/pricing", 1), track("Demo Requested", 1.5)]
    )
    config = Config()
    config.set_main_option("script_location", "qualify.store:migrations")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with engine.connect() as conn:
        row = conn.execute(select(leads.c.model_version_id, leads.c.state_version_id)).one()
    assert row.model_version_id is not None
    assert row.state_version_id == row.model_version_id
