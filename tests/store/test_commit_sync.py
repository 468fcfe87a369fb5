"""Acknowledged means durable on SQLite, through a power cut too: the service's writer
commits without syncing and answers each request only once a sync has put its commit on
disk, in a thread of its own (`Committer(sync=…)`, `ingest_engine`)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from helpers import track
from qualify.api.committer import Committer
from qualify.errors import StoreError
from qualify.model import load_model
from qualify.service.ingest import Ingestor
from qualify.service.rescore import activate_model
from qualify.store import open_engine
from qualify.store.database import Checkpointer, WalSync, ingest_engine
from qualify.store.tables import events

FIXTURES = Path(__file__).parent.parent / "fixtures"


def _synchronous(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.exec_driver_sql("PRAGMA synchronous").scalar()


def _store(tmp_path: Path, query: str = "") -> tuple[str, Engine]:
    url = f"sqlite:///{tmp_path / 'q.db'}{query}"
    engine = open_engine(url)
    model = load_model((FIXTURES / "worked_example.yaml").read_text())
    activate_model(engine, model, clock=time.time)
    return url, engine


def _stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(events)).scalar_one()


def test_the_writer_commits_without_syncing_and_everyone_else_syncs(tmp_path: Path) -> None:
    url, engine = _store(tmp_path)
    writer, sync = ingest_engine(engine, url)
    assert writer is not engine and isinstance(sync, WalSync)
    assert sync.path == tmp_path / "q.db-wal"
    assert (_synchronous(engine), _synchronous(writer)) == (2, 1)  # FULL, NORMAL
    writer.dispose()
    chosen, engine = _store(tmp_path, "?synchronous=normal")  # the user traded it away
    assert ingest_engine(engine, chosen) == (engine, None)
    engine.dispose()


def test_an_answer_waits_for_its_commit_to_reach_the_disk(tmp_path: Path) -> None:
    url, engine = _store(tmp_path)
    writer, wal_sync = ingest_engine(engine, url)
    assert wal_sync is not None
    checkpoints = Checkpointer(engine, also=(writer,))
    gate, synced_after = threading.Event(), []

    def sync() -> None:  # the real sync, held until the test lets it go
        gate.wait(10)
        synced_after.append(_stored(engine))
        wal_sync()

    committer = Committer(Ingestor(writer), sync=sync)

    async def scenario() -> None:
        answer = asyncio.ensure_future(committer.submit([track("Webinar Attended", 0, "ana")]))
        for _ in range(200):  # committed: another connection reads the message
            if _stored(engine) == 1:
                break
            await asyncio.sleep(0.02)
        assert _stored(engine) == 1
        await asyncio.sleep(0.1)
        assert not answer.done()  # committed, but not yet on disk: no answer
        gate.set()
        report = await asyncio.wait_for(answer, 10)
        assert report.ingested == 1

    asyncio.run(scenario())
    committer.close()
    checkpoints.stop()
    assert synced_after == [1]
    writer.dispose()
    engine.dispose()


def test_a_failed_sync_fails_the_request_and_the_retry_counts_once(tmp_path: Path) -> None:
    url, engine = _store(tmp_path)
    writer, _ = ingest_engine(engine, url)

    def broken_disk() -> None:
        raise OSError(5, "Input/output error")

    message = track("Webinar Attended", 0, "ana")
    committer = Committer(Ingestor(writer), sync=broken_disk)
    with pytest.raises(StoreError, match="could not sync its commit to disk"):
        asyncio.run(committer.submit([message]))
    committer.close()
    retry = Ingestor(writer).ingest_batch([message])  # what the SDK's retry does
    assert (retry.ingested, retry.duplicates, _stored(engine)) == (0, 1, 1)
    writer.dispose()
    engine.dispose()


def test_wal_sync_of_a_store_without_a_wal_file_has_nothing_to_do(tmp_path: Path) -> None:
    WalSync(tmp_path / "gone.db")()  # checkpointed and removed: no error


def _wal_frames(engine: Engine) -> int:
    """The frames the WAL holds (a PASSIVE checkpoint's count; it starts nothing over)."""
    with engine.connect() as conn:
        return conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()[1]


def _commits(ingestor: Ingestor, count: int, first: int = 0) -> None:
    for i in range(first, first + count):
        ingestor.ingest_batch([track("Webinar Attended", i / 100, f"lead-{i % 7}")])


def test_a_writer_that_never_stops_still_gets_its_wal_started_over(tmp_path: Path) -> None:
    """A PASSIVE checkpoint copies only what no reader still reads; under load, commits and
    reads never stop, so the WAL never got copied whole and never started over (it grew to
    gigabytes). Past the limit a round asks, and the writer starts the WAL over between two
    of its transactions."""
    url, engine = _store(tmp_path)
    writer, _ = ingest_engine(engine, url)
    checkpoints = Checkpointer(engine, interval=3600, also=(writer,), limit=10)  # rounds: ours
    ingestor = Ingestor(writer)
    wal = tmp_path / "q.db-wal"
    _commits(ingestor, 20)
    with engine.connect() as reader, reader.begin():
        reader.exec_driver_sql("SELECT count(*) FROM events").one()  # holds this snapshot
        _commits(ingestor, 5, 20)
        checkpoints.restart_if_due(writer)  # no round asked yet: nothing happens
        checkpoints.checkpoint()  # a round: copies up to the reader's snapshot; asks
    assert checkpoints.due.is_set()
    size = wal.stat().st_size
    _commits(ingestor, 1, 25)
    assert wal.stat().st_size > size  # the WAL grows on: a round alone did not start it over
    checkpoints.restart_if_due(writer)
    assert not checkpoints.due.is_set()
    size = wal.stat().st_size
    _commits(ingestor, 1, 26)
    assert wal.stat().st_size == size  # written from the WAL's beginning again
    assert 0 < _wal_frames(engine) < 10
    checkpoints.checkpoint()  # under the limit: nothing to ask
    assert not checkpoints.due.is_set()
    checkpoints.stop()
    assert _stored(engine) == 27
    writer.dispose()
    engine.dispose()


def test_when_no_writer_comes_by_the_checkpointer_starts_the_wal_over_itself(
    tmp_path: Path,
) -> None:
    url, engine = _store(tmp_path)
    writer, _ = ingest_engine(engine, url)
    checkpoints = Checkpointer(engine, interval=3600, also=(writer,), limit=10)
    _commits(Ingestor(writer), 20)
    wal = tmp_path / "q.db-wal"
    size = wal.stat().st_size
    checkpoints.checkpoint()  # asks
    assert wal.stat().st_size == size
    checkpoints.checkpoint()  # nobody came: started over here, and the file's space given back
    assert (wal.stat().st_size, _wal_frames(engine), checkpoints.due.is_set()) == (0, 0, False)
    checkpoints.stop()
    assert _stored(engine) == 20
    writer.dispose()
    engine.dispose()


def test_the_service_writer_does_its_upkeep_between_groups(tmp_path: Path) -> None:
    """The whole loop, as `qualify serve` wires it: requests through the group committer,
    rounds in the background; the WAL stays near its limit instead of growing with every
    commit."""
    url, engine = _store(tmp_path)
    writer, sync = ingest_engine(engine, url)
    checkpoints = Checkpointer(engine, interval=0.01, also=(writer,), limit=30)
    committer = Committer(
        Ingestor(writer), sync=sync, between=lambda: checkpoints.restart_if_due(writer)
    )
    largest = 0

    async def scenario() -> None:
        nonlocal largest
        for i in range(300):
            await committer.submit([track("Webinar Attended", i / 100, f"lead-{i % 7}")])
            largest = max(largest, (tmp_path / "q.db-wal").stat().st_size)

    asyncio.run(scenario())
    committer.close()
    checkpoints.stop()
    frames = largest // (4096 + 24)
    assert frames < 300  # each commit writes several frames: 300 commits would be > 900
    assert _stored(engine) == 300
    writer.dispose()
    engine.dispose()
