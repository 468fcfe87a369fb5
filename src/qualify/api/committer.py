"""Group commit: one writer per process commits what all waiting requests sent, together.

Each request hands its decoded messages in and waits; the writer thread takes everything
waiting (up to `limit` messages), ingests it in one transaction — events, leads, ledger and
stage changes — and only after the commit answers each request. So an acknowledged message is
durable and scored, and a busy server pays one transaction for many requests instead of one
each. If a group fails, its requests are retried one by one, so one bad request cannot fail
the others.

With `sync` (a SQLite store whose writer commits without syncing, `ingest_engine`) the
answers wait in a second thread until `sync` has put the commit on disk. That thread syncs
once for every commit waiting, while the writer goes on with the next group: the disk's
latency is paid by each request, but no longer by the writer's throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from qualify.core.activity import ActivityEvent
from qualify.errors import StoreError
from qualify.service.ingest import Ingestor, IngestReport

__all__ = ["Committer"]

log = logging.getLogger("qualify.api")


@dataclass(slots=True)
class _Job:
    messages: list[ActivityEvent]
    future: asyncio.Future[IngestReport]
    loop: asyncio.AbstractEventLoop


class Committer:
    def __init__(
        self,
        ingestor: Ingestor,
        limit: int = 5000,
        on_commit: Callable[[IngestReport], None] | None = None,
        sync: Callable[[], None] | None = None,
        between: Callable[[], None] | None = None,
    ) -> None:
        """`between`: what the writer does after each group, before the next (upkeep that
        needs a moment with no transaction open, as starting the WAL over)."""
        self.ingestor = ingestor
        self.limit = limit
        self.on_commit = on_commit
        self.sync = sync
        self.between = between
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.committed: queue.Queue[tuple[list[_Job], IngestReport] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="qualify-writer", daemon=True)
        self.thread.start()
        self.syncer: threading.Thread | None = None
        if sync is not None:
            self.syncer = threading.Thread(target=self._sync, name="qualify-sync", daemon=True)
            self.syncer.start()

    async def submit(self, messages: list[ActivityEvent]) -> IngestReport:
        """Ingest the messages; returns once they are committed (with the report of the
        whole group they were committed in)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[IngestReport] = loop.create_future()
        self.jobs.put(_Job(messages, future, loop))
        return await future

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join(timeout=30)
        if self.syncer is not None:  # after the writer: its last commits are answered too
            self.committed.put(None)
            self.syncer.join(timeout=30)

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            group, size, stop = [job], len(job.messages), False
            while size < self.limit:
                try:
                    more = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                group.append(more)
                size += len(more.messages)
            self._commit(group)
            if stop:
                return
            if self.between is not None:
                try:
                    self.between()
                except Exception:  # upkeep: the next group must go on regardless
                    log.exception("the writer's upkeep between groups failed")

    def _commit(self, group: list[_Job]) -> None:
        try:
            report = self.ingestor.ingest_batch([m for job in group for m in job.messages])
        except Exception as exc:
            if len(group) > 1:
                for job in group:
                    self._commit([job])
                return
            _answer(group[0], error=exc)
            return
        if self.on_commit is not None:
            self.on_commit(report)
        if self.syncer is not None:
            self.committed.put((group, report))
            return
        for job in group:
            _answer(job, report=report)

    def _sync(self) -> None:
        """Answer committed groups once their commits are on disk: one sync for all those
        waiting. A failed sync leaves the commits' durability unknown, so their requests
        get the error (SDKs retry; their messageIds make the retry count once)."""
        assert self.sync is not None
        while True:
            item = self.committed.get()
            waiting, stop = [item], item is None
            while not stop:
                try:
                    more = self.committed.get_nowait()
                except queue.Empty:
                    break
                waiting.append(more)
                stop = more is None
            done = [entry for entry in waiting if entry is not None]
            error: BaseException | None = None
            if done:
                try:
                    self.sync()
                except Exception as exc:  # any failure: answered, never left waiting
                    error = StoreError(f"the store could not sync its commit to disk: {exc}")
            for group, report in done:
                for job in group:
                    _answer(job, report=None if error else report, error=error)
            if stop:
                return


def _answer(
    job: _Job, report: IngestReport | None = None, error: BaseException | None = None
) -> None:
    def settle() -> None:
        if job.future.done():  # the client went away
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            assert report is not None
            job.future.set_result(report)

    with contextlib.suppress(RuntimeError):  # the loop closed (shutdown): nobody waits
        job.loop.call_soon_threadsafe(settle)
