"""The HTTP service's writer without HTTP: the first N messages of the generated file through
`Ingestor.ingest_batch`, `--group` messages a transaction, into a fresh SQLite store with the
server's checkpointing (a background thread).

`qualify serve` commits what its concurrent requests sent as one transaction (group commit):
8 clients sending batches of 100 make groups of up to 800, and single `/v1/track` calls make
groups of one or two. This measures that transaction's cost alone, so a change to the writer
can be compared run by run without the noise of the HTTP stack and its clients.

    python bench/writer.py [--events 50000] [--group 800] [--runs 3]
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from common import OUT, events_file, machine, model_path
from qualify.core.activity import ActivityEvent, decode_message
from qualify.model import load_model
from qualify.service.ingest import Ingestor
from qualify.service.rescore import activate_model
from qualify.store import open_engine
from qualify.store.database import Checkpointer


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--group", type=int, default=800, help="messages per transaction")
    parser.add_argument("--runs", type=int, default=3)
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


def one_run(events: list[ActivityEvent], group: int) -> float:
    folder = Path(tempfile.mkdtemp(dir=OUT))
    engine = open_engine(f"sqlite:///{folder / 'writer.db'}")
    activate_model(engine, load_model(model_path().read_text(), "model.yaml"), clock=time.time)
    checkpoints = Checkpointer(engine)
    ingestor = Ingestor(engine)
    start = time.perf_counter()
    for i in range(0, len(events), group):
        ingestor.ingest_batch(events[i : i + group])
    elapsed = time.perf_counter() - start
    checkpoints.stop()
    engine.dispose()
    shutil.rmtree(folder)
    return elapsed


def main() -> None:
    args = arguments()
    events = messages(args.events)
    times = [one_run(events, args.group) for _ in range(args.runs)]
    mine = statistics.median(times)
    transactions = -(-len(events) // args.group)
    print(f"machine: {machine()}")
    print(
        f"{len(events):,} messages in transactions of {args.group}: median {mine:.2f} s "
        f"({', '.join(f'{t:.2f}' for t in times)}) = {len(events) / mine:,.0f} events/s, "
        f"{mine / transactions * 1000:.2f} ms a transaction"
    )


if __name__ == "__main__":
    main()
