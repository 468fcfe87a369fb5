"""Shared fixtures: stores on real SQLite and, when configured, the real PostgreSQL server."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).parent))

from qualify.store import open_engine
from qualify.store.tables import metadata
from serving import fresh_database


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh database on the PostgreSQL server, dropped at the end of the session."""
    yield from fresh_database("postgres", tmp_path_factory.mktemp("pg"))


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


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Spark tests need Java 17+ (`.ci/run` installs it); without it they skip, saying so."""
    if item.get_closest_marker("spark") is not None and shutil.which("java") is None:
        pytest.skip("Java is not installed: Spark tests skipped (.ci/run installs Java 17)")
