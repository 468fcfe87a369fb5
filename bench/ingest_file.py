"""`qualify ingest` of the generated ~1,000,000-message file into a fresh SQLite store.

Goal: ≥ 15,000 events/s, and ≥ 45 % of the speed of raw SQLite inserts of the same rows,
measured side by side: the baseline reads the same file, decodes each line, and inserts the
same event rows (message id, lead, type, name, time, received time, JSON payload) into the
same migrated `events` table, with the store's SQLite settings, by executemany, committing
every 10,000 rows — storing without scoring, ledger, identity or lifecycle.

    python bench/ingest_file.py [--events 1000000] [--runs 3]
"""

from __future__ import annotations

import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson

from common import OUT, arguments, events_file, machine, model_path
from qualify.store import open_engine
from qualify.store.database import sqlite_pragmas


def fresh(path: Path) -> str:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


def raw_inserts(events: Path, db: Path) -> None:
    open_engine(fresh(db)).dispose()  # the same schema, from the same migrations
    conn = sqlite3.connect(db)
    for pragma in sqlite_pragmas():  # the store's own settings: WAL, FULL, its page cache
        conn.execute(pragma)
    sql = (
        "INSERT INTO events (message_id, lead_id, type, name, ts, received_at, payload) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    now = time.time()
    rows = []
    with events.open("rb") as f:
        for line in f:
            m = orjson.loads(line)
            lead = m.get("userId") or "anon:" + m.get("anonymousId", "")
            rows.append(
                (
                    m["messageId"],
                    lead,
                    m["type"],
                    m.get("event") or m.get("name") or m["type"],
                    now,
                    now,
                    orjson.dumps(m).decode(),
                )
            )
            if len(rows) == 10_000:
                conn.executemany(sql, rows)
                conn.commit()
                rows.clear()
    conn.executemany(sql, rows)
    conn.commit()
    conn.close()


def main() -> None:
    args = arguments()
    path, count = events_file(args.events)
    model = model_path()
    db = OUT / "ingest.db"

    def ingest() -> None:
        url = fresh(db)
        subprocess.run(
            [sys.executable, "-m", "qualify", "model", "activate", str(model), "--db", url],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "qualify", "ingest", str(path), "--db", url],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        timings.append(time.perf_counter() - start)

    def raw_run() -> None:
        start = time.perf_counter()
        raw_inserts(path, OUT / "raw.db")
        raw_times.append(time.perf_counter() - start)

    # Side by side: each of our runs is followed by a baseline run, so a machine that speeds
    # up or slows down over the minutes of the benchmark moves both figures alike.
    timings: list[float] = []
    raw_times: list[float] = []
    for _ in range(args.runs):
        ingest()
        raw_run()
    ours, raw = statistics.median(timings), statistics.median(raw_times)
    ratios = sorted(r / o for o, r in zip(timings, raw_times, strict=True))
    print(f"machine: {machine()}")
    print(f"file: {count:,} messages, model: 20 rules, SQLite (WAL, synchronous=FULL)")
    print(
        f"qualify ingest: median {ours:.1f}s of {args.runs} "
        f"({', '.join(f'{t:.1f}' for t in timings)}) = {count / ours:,.0f} events/s"
    )
    print(
        f"baseline raw inserts: median {raw:.1f}s "
        f"({', '.join(f'{t:.1f}' for t in raw_times)}) = {count / raw:,.0f} events/s"
    )
    print(
        f"ratio: qualify ingest runs at {raw / ours:.1%} of raw-insert speed (run by run: "
        f"{', '.join(f'{r:.1%}' for r in ratios)}; median {statistics.median(ratios):.1%})"
    )


if __name__ == "__main__":
    main()
