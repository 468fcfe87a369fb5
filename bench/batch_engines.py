"""The compiled plan on each batch engine — DuckDB, PostgreSQL, Spark (local mode) — over
the same inputs: the demo file's rule events and profiles (after the Python input pass),
loaded into each engine as tables. Runs alternate between engines, so that a noisy machine
slows them alike; loading the tables is timed apart from running the plan.

PostgreSQL here runs the plan over tables loaded from the file; `qualify batch --engine
postgres` reads a store's `events` table in place, which is the same plan on a table of the
same shape.

    python bench/batch_engines.py --postgres postgresql://postgres@127.0.0.1:5432/test \
        [--events 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from sqlalchemy import create_engine, text

from common import events_file, machine, model_path
from qualify.batch.engine import BatchRun, open_backend
from qualify.batch.inputs import from_messages
from qualify.cli.shared import bulk
from qualify.core.activity import parse_time
from qualify.model import load_model
from qualify.service.files import Problems, read_jsonl

AS_OF = parse_time("2026-09-21T00:00:00Z")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", required=True, help="a server URL; a database is made")
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--engines", default="duckdb,postgres,spark")
    args = parser.parse_args()
    path, count = events_file(args.events)
    model = load_model(model_path().read_text())
    with path.open("rb") as lines, bulk():
        inputs = from_messages(model, read_jsonl(lines, Problems()), AS_OF)

    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    database = f"qualify_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    url = args.postgres.rsplit("/", 1)[0] + "/" + database
    chosen = args.engines.split(",")
    backends = {
        name: open_backend(name, url=url, master=args.spark_master)
        for name in ("duckdb", "postgres", "spark")
        if name in chosen
    }
    try:
        loads: dict[str, float] = {}
        tables = {}
        for name, backend in backends.items():
            start = time.perf_counter()
            tables[name] = backend.load(inputs, model)
            loads[name] = time.perf_counter() - start
        times: dict[str, list[float]] = {name: [] for name in backends}
        mqls: dict[str, set[int]] = {name: set() for name in backends}
        for _ in range(args.runs):
            for name, backend in backends.items():
                start = time.perf_counter()
                events, profiles = tables[name]
                run = BatchRun(model, backend, events, profiles, AS_OF, inputs.only)
                scored = run.table()
                times[name].append(time.perf_counter() - start)
                mqls[name].add(sum(scored.column("mql").to_pylist()))
    finally:
        if "postgres" in backends:
            backends["postgres"].close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))

    print(f"machine: {machine()}")
    print(f"file: {count:,} messages; {inputs.events.num_rows:,} rule events, "
          f"{inputs.profiles.num_rows:,} leads; model: 20 rules")  # fmt: skip
    base = statistics.median(next(iter(times.values())))
    for name in backends:
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        median = statistics.median(times[name])
        print(f"{name:9} load {loads[name]:6.2f}s  plan median {median:6.2f}s ({runs})"
              f"  ×{median / base:.1f} the first  MQLs {sorted(mqls[name])}")  # fmt: skip


if __name__ == "__main__":
    main()
