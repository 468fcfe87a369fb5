"""`qualify serve` over loopback: `/v1/batch` throughput and single `/v1/track` latency.

Throughput: the generated demo messages (time-ordered, leads interleaved) sent as batches of
100 by 8 concurrent keep-alive clients; goal ≥ 15,000 events/s on SQLite on this 2-core
machine (PostgreSQL reported too). Side by side: raw inserts of the same event rows into the
same table (executemany, commit per 100 rows, the store's SQLite settings).

Latency: single `/v1/track` calls at a steady 200 requests/s (an open-loop schedule: a slow
answer does not slow the sending); goal p99 ≤ 20 ms. Side by side: a raw insert of the same
row and its commit, one at a time.

    python bench/http_ingest.py [--events 200000] [--runs 3] [--postgres URL]
"""

from __future__ import annotations

import argparse
import atexit
import gc
import itertools
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from common import OUT, events_file, machine, model_path, wal_bytes
from qualify.store import open_engine
from qualify.store.database import sqlite_pragmas
from serving import start_service, stop_service

WAL_SIZES: list[int] = []  # after each SQLite throughput run: does the WAL stay bounded?
INSERT = (
    "INSERT INTO events (message_id, lead_id, type, name, ts, received_at, payload) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    parser.add_argument("--postgres", default=os.environ.get("QUALIFY_TEST_POSTGRES_URL"))
    parser.add_argument("--latency-only", action="store_true")
    return parser.parse_args()


def lines(count: int) -> list[bytes]:
    path, _ = events_file(1_000_000)
    with path.open("rb") as f:
        return [line.strip() for line in itertools.islice(f, count)]


def row(line: bytes, now: float) -> tuple:
    m = orjson.loads(line)
    lead = m.get("userId") or "anon:" + m.get("anonymousId", "")
    name = m.get("event") or m.get("name") or m["type"]
    return (m["messageId"], lead, m["type"], name, now, now, line.decode())


def fresh_sqlite(name: str) -> str:
    """A new SQLite file in its own folder, removed when the benchmark ends."""
    folder = Path(tempfile.mkdtemp(dir=OUT))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return f"sqlite:///{folder / name}"


def throughput(db: str, messages: list[bytes], workers: int) -> float:
    service = start_service(db, "--workers", str(workers), model=str(model_path()))
    bodies = [
        b'{"batch":[' + b",".join(messages[i : i + 100]) + b"]}"
        for i in range(0, len(messages), 100)
    ]
    pending = iter(bodies)
    lock = threading.Lock()
    failures: list[str] = []

    def client() -> None:
        with httpx.Client(
            base_url=service.base, auth=(service.keys["write"], ""), timeout=120
        ) as http:
            while True:
                with lock:
                    body = next(pending, None)
                if body is None:
                    return
                answer = http.post("/v1/batch", content=body)
                if answer.status_code != 200:
                    failures.append(answer.text[:200])

    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(client) for _ in range(8)]:
                future.result()
        elapsed = time.perf_counter() - start
        WAL_SIZES.append(wal_bytes(db))
    finally:
        stop_service(service)
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return elapsed


def raw_batches(messages: list[bytes]) -> float:
    db = fresh_sqlite("raw.db")
    open_engine(db).dispose()
    conn = sqlite3.connect(db.removeprefix("sqlite:///"))
    for pragma in sqlite_pragmas():  # the store's own settings
        conn.execute(pragma)
    start = time.perf_counter()
    now = time.time()
    for i in range(0, len(messages), 100):
        conn.executemany(INSERT, [row(line, now) for line in messages[i : i + 100]])
        conn.commit()
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def latency(db: str, messages: list[bytes], seconds: float) -> list[float]:
    service = start_service(db, model=str(model_path()))
    tracks = [m for m in messages if b'"type":"track"' in m]
    count = int(seconds * 200)
    results: list[float] = []
    lock = threading.Lock()

    def one(body: bytes, http: httpx.Client) -> None:
        start = time.perf_counter()
        answer = http.post("/v1/track", content=body)
        took = time.perf_counter() - start
        if answer.status_code != 200:
            raise SystemExit(answer.text)
        with lock:
            results.append(took)

    try:
        clients = [
            httpx.Client(base_url=service.base, auth=(service.keys["write"], ""), timeout=30)
            for _ in range(16)
        ]
        with ThreadPoolExecutor(16) as pool:
            begin = time.perf_counter()
            futures = []
            for i in range(count):
                due = begin + i / 200
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(one, tracks[i % len(tracks)], clients[i % 16]))
            for future in futures:
                future.result()
        for http in clients:
            http.close()
    finally:
        stop_service(service)
    return results


def raw_single(messages: list[bytes], count: int) -> list[float]:
    db = fresh_sqlite("raw-single.db")
    open_engine(db).dispose()
    conn = sqlite3.connect(db.removeprefix("sqlite:///"))
    for pragma in sqlite_pragmas():  # the store's own settings
        conn.execute(pragma)
    tracks = [m for m in messages if b'"type":"track"' in m][:count]
    out = []
    for line in tracks:
        start = time.perf_counter()
        conn.execute(INSERT, row(line, time.time()))
        conn.commit()
        out.append(time.perf_counter() - start)
    conn.close()
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def main() -> None:
    args = arguments()
    messages = lines(args.events)
    gc.freeze()  # the client's own collector pauses are not the server's latency
    print(f"machine: {machine()}")
    print(f"messages: {len(messages):,} demo messages (time-ordered), batches of 100")
    if not args.latency_only:
        measure_throughput(args, messages)
    measure_latency(args, messages)


def measure_throughput(args: argparse.Namespace, messages: list[bytes]) -> None:
    ours = [throughput(fresh_sqlite("http.db"), messages, 1) for _ in range(args.runs)]
    raw = [raw_batches(messages) for _ in range(args.runs)]
    mine, base = statistics.median(ours), statistics.median(raw)
    print(
        f"SQLite, 1 worker: median {mine:.1f}s ({', '.join(f'{t:.1f}' for t in ours)}) "
        f"= {len(messages) / mine:,.0f} events/s"
    )
    print(f"WAL file after each run: {', '.join(f'{b / 1e6:,.0f} MB' for b in WAL_SIZES)}")
    print(
        f"baseline raw inserts, commit per 100: median {base:.1f}s = "
        f"{len(messages) / base:,.0f} events/s; ratio {base / mine:.1%}"
    )
    if args.postgres:
        from serving import fresh_database

        for workers in (1, 2):
            times = []
            for _ in range(args.runs):
                for db in fresh_database("postgres", Path(tempfile.mkdtemp()), args.postgres):
                    times.append(throughput(db, messages, workers))
            t = statistics.median(times)
            print(
                f"PostgreSQL, {workers} worker(s): median {t:.1f}s "
                f"({', '.join(f'{x:.1f}' for x in times)}) = {len(messages) / t:,.0f} events/s"
            )


def measure_latency(args: argparse.Namespace, messages: list[bytes]) -> None:
    took = latency(fresh_sqlite("latency.db"), messages, args.latency_seconds)
    raw_took = raw_single(messages, len(took))
    print(
        f"/v1/track at 200/s on SQLite, {len(took):,} calls: "
        f"p50 {percentile(took, 0.5) * 1000:.1f} ms, p99 {percentile(took, 0.99) * 1000:.1f} ms, "
        f"max {max(took) * 1000:.1f} ms"
    )
    print(
        f"baseline raw single insert + commit: p50 {percentile(raw_took, 0.5) * 1000:.2f} ms, "
        f"p99 {percentile(raw_took, 0.99) * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
