"""`qualify batch --db URL` on a store that already holds the demo file: each engine end to
end, as a user runs it (start-up, reading the store, the plan, writing Parquet), alternating.

PostgreSQL reads its store's events in place; DuckDB and Spark read the events relation
PostgreSQL computes from its `jsonb` through ADBC (libpq's binary COPY into Arrow). Fill the
store once, e.g.:

    qualify model activate bench/out/model.yaml --db postgresql://…/qbench
    qualify ingest bench/out/events-1000000.jsonl --db postgresql://…/qbench
    python bench/batch_store.py --db postgresql://…/qbench [--engines postgres,duckdb]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from common import OUT, machine, model_path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True, help="a store holding the demo file")
    parser.add_argument("--engines", default="postgres,duckdb")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    model = model_path()
    engines = args.engines.split(",")
    times: dict[str, list[float]] = {e: [] for e in engines}
    for _ in range(args.runs):
        for engine in engines:
            out = OUT / f"store-scores-{engine}.parquet"
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "qualify", "batch", str(model), "--db", args.db,
                 "--engine", engine, "--as-of", "2026-09-21T00:00:00Z", "--out", str(out)],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            times[engine].append(time.perf_counter() - start)
    print(f"machine: {machine()}")
    first = statistics.median(times[engines[0]])
    for engine in engines:
        median = statistics.median(times[engine])
        runs = ", ".join(f"{t:.1f}" for t in times[engine])
        print(f"qualify batch --db … --engine {engine}: median {median:.1f}s ({runs}), "
              f"×{median / first:.2f} the first")  # fmt: skip


if __name__ == "__main__":
    main()
