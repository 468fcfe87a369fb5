"""The `service` fixture: a real server per test module, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from serving import Service, fresh_database, start_service, stop_service


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    for db in fresh_database(request.param, tmp_path_factory.mktemp("service")):
        running = start_service(db)
        try:
            yield running
        finally:
            stop_service(running)
