"""The HTTP service's writer without HTTP: the first N messages of the generated file through
`Ingestor.ingest_batch`, `--group` messages a transaction, into a fresh store: SQLite with the
server's checkpointing (a background thread), or PostgreSQL with `--postgres`.

`qualify serve` commits what its concurrent requests sent as one transaction (group commit),
and on SQLite syncs each commit to disk in a second thread before answering; so does this:
8 clients sending batches of 100 make groups of up to 800, and single `/v1/track` calls make
groups of one or two. This measures that transaction's cost alone, so a change to the writer
can be compared run by run without the noise of the HTTP stack and its clients.

`--ingestors 2` has two ingestors take turns, as two server workers on one store do: each
then finds that the other wrote since its own last commit, and must forget what the other
wrote. `--postgres URL` runs on a new database on that server instead of SQLite. Besides the
time, it prints the leads read from the store (what the ingestors did not hold in memory).

The garbage collector is set as the server sets it once started (`settle_collector`).

`--every N` prints, every N messages, the rate since the last line and the sizes of the store
and its WAL: how the writer holds up as the store grows under a steady load.

`--held N` first ingests N other leads (one identify each, not timed), which the (first)
ingestor then holds in memory, as a server does every lead it has written since it started (up to
`WARM_LIMIT`): a transaction's cost must not grow with them.

    python bench/writer.py [--events 50000] [--group 800] [--runs 3] [--ingestors 1] [--held 0]
                           [--every N] [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from common import OUT, events_file, machine, model_path, wal_bytes
from qualify.api.app import settle_collector
from qualify.core.activity import ActivityEvent, decode_message
from qualify.model import load_model
from qualify.service.ingest import Ingestor
from qualify.service.rescore import activate_model
from qualify.store import open_engine
from qualify.store import repository as repo
from qualify.store.database import Checkpointer, ingest_engine


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--group", type=int, default=800, help="messages per transaction")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ingestors", type=int, default=1, help="taking turns, as workers do")
    parser.add_argument("--postgres", help="a PostgreSQL server URL: run there, not on SQLite")
    parser.add_argument("--held", type=int, default=0, help="other leads held in memory first")
    parser.add_argument(
        "--every", type=int, default=0, help="print the rate and file sizes every N messages"
    )
    return parser.parse_args()


def messages(count: int) -> list[ActivityEvent]:
    """Decoded as the HTTP endpoint decodes them: each keeps its JSON text to store."""
    path, _ = events_file(1_000_000)
    now = time.time()
    out = []
    with path.open("rb") as f:
        for line in itertools.islice(f, count):
            event = decode_message(orjson.loads(line), received_at=now)
            event.raw = line.strip()
            out.append(event)
    return out


def held_leads(count: int) -> list[ActivityEvent]:
    """`count` leads of one identify each, none of them in the generated file."""
    now = time.time()
    return [
        decode_message(
            {
                "type": "identify",
                "userId": f"held-{i}",
                "messageId": f"held-{i}",
                "timestamp": "2026-06-01T00:00:00Z",
                "traits": {"title": "Engineer", "email": f"held-{i}@example.com"},
            },
            received_at=now,
        )
        for i in range(count)
    ]


def one_run(events: list[ActivityEvent], args: argparse.Namespace) -> tuple[float, int]:
    """Seconds for all transactions, and the leads the ingestors read from the store."""
    folder = Path(tempfile.mkdtemp(dir=OUT))
    with contextlib.ExitStack() as stack:
        if args.postgres:
            sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
            from serving import fresh_database  # the test suite's: a new database, dropped after

            url = stack.enter_context(
                contextlib.contextmanager(fresh_database)("postgres", folder, args.postgres)
            )
        else:
            url = f"sqlite:///{folder / 'writer.db'}"
        engine = open_engine(url)
        model = load_model(model_path().read_text(), "model.yaml")
        activate_model(engine, model, clock=time.time)
        # as the server: commits without syncing, and the WAL synced in another thread
        writer, sync = ingest_engine(engine, url)
        checkpoints = Checkpointer(engine, also=(writer,)) if not args.postgres else None
        syncer = stack.enter_context(ThreadPoolExecutor(1))
        ingestors = [Ingestor(writer) for _ in range(args.ingestors)]
        held = held_leads(args.held)
        for i in range(0, len(held), 20_000):  # the first ingestor holds them
            ingestors[0].ingest_batch(held[i : i + 20_000])
        read = _count_reads()
        start = time.perf_counter()
        synced = []
        mark = start
        for turn, i in enumerate(range(0, len(events), args.group)):
            if args.every and i and i % args.every < args.group:
                mark = _report(i, args.every, mark, url)
            ingestors[turn % len(ingestors)].ingest_batch(events[i : i + args.group])
            if sync is not None:
                synced.append(syncer.submit(sync))
            if checkpoints is not None:  # the server's writer does this between groups
                checkpoints.restart_if_due(writer)
        for done in synced:  # every transaction acknowledged: on disk
            done.result()
        elapsed = time.perf_counter() - start
        if checkpoints is not None:
            checkpoints.stop()
        writer.dispose()
        engine.dispose()
    shutil.rmtree(folder)
    return elapsed, read()


def _report(done: int, every: int, mark: float, url: str) -> float:
    """A line of `--every`: the rate since the last line, and the store's file sizes (the
    WAL's shows whether checkpoints keep up with a steady load)."""
    now = time.perf_counter()
    line = f"{done:>10,} messages: {every / (now - mark):,.0f} events/s"
    if url.startswith("sqlite:///"):
        store = Path(url.removeprefix("sqlite:///")).stat().st_size
        line += f", store {store / 1e6:,.0f} MB, WAL file {wal_bytes(url) / 1e6:,.0f} MB"
    print(line, flush=True)
    return now


def _count_reads() -> Callable[[], int]:
    """Counts the leads `repo.load_leads` returns from now on (the bench's own wrapper)."""
    original = repo.load_leads
    count = [0]

    def counting(*args: Any, **kwargs: Any) -> dict[str, Any]:
        found = original(*args, **kwargs)
        count[0] += len(found)
        return found

    repo.load_leads = counting

    def done() -> int:
        repo.load_leads = original
        return count[0]

    return done


def main() -> None:
    args = arguments()
    events = messages(args.events)
    settle_collector()  # as the server does once started: else the collector's rescans of
    # the leads held in memory cost the writer here ~15 % that it does not pay there
    runs = [one_run(events, args) for _ in range(args.runs)]
    times = [t for t, _ in runs]
    mine = statistics.median(times)
    transactions = -(-len(events) // args.group)
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(f"machine: {machine()}")
    print(
        f"{store}, {args.ingestors} ingestor(s) taking turns, {args.held:,} other leads held: "
        f"{len(events):,} messages in "
        f"transactions of {args.group}: median {mine:.2f} s "
        f"({', '.join(f'{t:.2f}' for t in times)}) = {len(events) / mine:,.0f} events/s, "
        f"{mine / transactions * 1000:.2f} ms a transaction; leads read from the store: "
        f"{', '.join(f'{n:,}' for _, n in runs)}"
    )


if __name__ == "__main__":
    main()
