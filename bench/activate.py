"""`qualify model activate` on a large store: the live engine against a batch engine.

Activating a model rescores every lead. The live engine rebuilds each lead's rule state from
its stored events; `--engine duckdb` scores the store's events in bulk and writes the scores
back (`qualify.service.rescore.write_back`). The store is the generated ~1,000,000-message
file ingested with the demo model; the new model is the demo model with other points and a
lower MQL bar, so many leads change. Each run starts from a fresh copy of that store, the
live engine and the batch engine alternating, side by side.

    python bench/activate.py [--events 1000000] [--runs 3] [--engines duckdb]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import OUT, events_file, machine, model_path, run
from qualify.service.demo import demo_model_text


def other_model() -> Path:
    path = OUT / "model-2.yaml"
    path.write_text(
        demo_model_text()
        .replace("version: 1", "version: 2")
        .replace("score_at_least: 100\n  pql", "score_at_least: 80\n  pql")
        .replace("within: 7d\n    points: 30", "within: 7d\n    points: 45")
    )
    return path


def base_store(events: Path, count: int) -> Path:
    """The file ingested once with the demo model (kept in bench/out)."""
    base = OUT / f"activate-{count}.db"
    if not base.exists():
        partial = OUT / "activate-partial.db"
        url = fresh(partial)
        qualify(["model", "activate", str(model_path()), "--db", url])
        qualify(["ingest", str(events), "--db", url])
        with sqlite3.connect(partial) as conn:  # one file to copy
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        partial.rename(base)
        fresh(partial)  # its -wal and -shm
    return base


def fresh(db: Path) -> str:
    """No store at `db` (nor its WAL files); its URL."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{db}"


def qualify(args: list[str]) -> None:
    run([sys.executable, "-m", "qualify", *args], stdout=subprocess.DEVNULL)


def activate(base: Path, model: Path, engine: str) -> float:
    work = OUT / "activate-work.db"
    url = fresh(work)
    shutil.copyfile(base, work)
    start = time.perf_counter()
    qualify(["model", "activate", str(model), "--db", url, "--engine", engine])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engines", default="duckdb", help="batch engines, comma-separated")
    args = parser.parse_args()
    events, count = events_file(args.events)
    base = base_store(events, count)
    with sqlite3.connect(base) as conn:
        leads = conn.execute("SELECT count(*) FROM leads").fetchone()[0]
    model = other_model()
    engines = ["live", *args.engines.split(",")]
    times: dict[str, list[float]] = {e: [] for e in engines}
    for _ in range(args.runs):
        for engine in engines:
            times[engine].append(activate(base, model, engine))
    print(f"machine: {machine()}")
    print(f"store: {count:,} messages, {leads:,} leads (SQLite); new model: 20 rules")
    live = statistics.median(times["live"])
    for engine in engines:
        t = statistics.median(times[engine])
        runs = ", ".join(f"{x:.1f}" for x in times[engine])
        print(
            f"model activate --engine {engine}: median {t:.1f}s ({runs}) = "
            f"{leads / t:,.0f} leads/s, {live / t:.2f}x the live engine"
        )


if __name__ == "__main__":
    main()
