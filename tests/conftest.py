"""Shared fixtures: stores on real SQLite and, when configured, the real PostgreSQL server."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

sys.path.insert(0, str(Path(__file__).parent))

from qualify.store import open_engine
from qualify.store.database import database_url
from qualify.store.tables import metadata

POSTGRES_URL = os.environ.get("QUALIFY_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL server, dropped at the end of the session."""
    if not POSTGRES_URL:
        pytest.skip("QUALIFY_TEST_POSTGRES_URL is not set: PostgreSQL tests skipped")
    admin = create_engine(database_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    name = f"qualify_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = database_url(POSTGRES_URL)
    url = base.rsplit("/", 1)[0] + "/" + name
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty store: a SQLite file, or the PostgreSQL test database."""
    if request.param == "sqlite":
        store = open_engine(f"sqlite:///{tmp_path / 'qualify.db'}")
        yield store
        store.dispose()
        return
    url = request.getfixturevalue("postgres_url")
    store = open_engine(url)
    with store.begin() as conn:
        names = ", ".join(t.name for t in reversed(metadata.sorted_tables))
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    yield store
    store.dispose()
