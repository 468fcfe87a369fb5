"""The batch engines under test: DuckDB (embedded), PostgreSQL (the server CI runs) and
Apache Spark (local mode, one session for the whole run: it takes seconds to start)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qualify.batch.engine import Backend, open_backend

ENGINES = [
    "duckdb",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("spark", marks=[pytest.mark.spark, pytest.mark.slow]),
]


@pytest.fixture(scope="session")
def spark_backend() -> Iterator[Backend]:
    backend = open_backend("spark", master="local[2]")
    yield backend
    backend.session.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def postgres_backend(postgres_url: str) -> Iterator[Backend]:
    backend = open_backend("postgres", url=postgres_url)
    yield backend
    backend.close()


@pytest.fixture(params=ENGINES)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A connection to each batch engine in turn."""
    if request.param == "duckdb":
        backend = open_backend("duckdb")
        yield backend
        backend.close()
    else:
        yield request.getfixturevalue(f"{request.param}_backend")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """PySpark's own result sockets are closed by the garbage collector (ResourceWarning):
    tolerated on Spark tests only, so our own leaks still fail everywhere else."""
    for item in items:
        if item.get_closest_marker("spark") is not None:
            item.add_marker(
                pytest.mark.filterwarnings(
                    "ignore:Exception ignored in. <socket.socket"
                    ":pytest.PytestUnraisableExceptionWarning"
                )
            )
