"""Group commit: one writer per process commits what all waiting requests sent, together.

Each request hands its decoded messages in and waits; the writer thread takes everything
waiting (up to `limit` messages), ingests it in one transaction — events, leads, ledger and
stage changes — and only after the commit answers each request. So an acknowledged message is
durable and scored, and a busy server pays one transaction for many requests instead of one
each. If a group fails, its requests are retried one by one, so one bad request cannot fail
the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from qualify.core.activity import ActivityEvent
from qualify.service.ingest import Ingestor, IngestReport

__all__ = ["Committer"]


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
    ) -> None:
        self.ingestor = ingestor
        self.limit = limit
        self.on_commit = on_commit
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="qualify-writer", daemon=True)
        self.thread.start()

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
        for job in group:
            _answer(job, report=report)


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
