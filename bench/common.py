"""Shared by the benchmarks: the generated event file, timing, and the machine's description."""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from qualify.service.demo import DemoSpec, demo_model_text, generate

OUT = Path(__file__).parent / "out"
NOW = 1_790_000_000.0  # a fixed "now" (2026-09-21): the same file every time


def model_path() -> Path:
    OUT.mkdir(exist_ok=True)
    path = OUT / "model.yaml"
    path.write_text(demo_model_text())  # the demo model: 20 rules (8 fit, 12 engagement)
    return path


def events_file(
    target: int = 1_000_000, seed: int = 1, leads: int | None = None
) -> tuple[Path, int]:
    """A JSON Lines file of about `target` demo messages over 90 days, in time order.

    `leads` spreads them over that many leads (fewer messages a lead than the demo's ~33);
    such a file is written lead by lead, each lead's messages in time order, rather than
    sorted as a whole (ten million messages do not fit in memory as objects to sort). No
    two leads share an id, so the order between leads changes no score.
    """
    OUT.mkdir(exist_ok=True)
    path = OUT / (f"events-{target}.jsonl" if leads is None else f"events-{target}-{leads}.jsonl")
    if path.exists():
        with path.open("rb") as f:
            return path, sum(1 for _ in f)
    rng = random.Random(seed)
    if leads is None:
        leads = max(1, target // 33)  # the demo averages ~33 messages a lead
        spec = DemoSpec(leads=leads, accounts=max(1, leads // 6))
        messages = sorted(
            generate(spec, rng=rng, now=NOW), key=lambda e: (e.timestamp, e.message_id)
        )
    else:  # the demo's 60 events_per_lead give ~33 messages a lead
        spec = DemoSpec(
            leads=leads, accounts=max(1, leads // 6), events_per_lead=60 * target / leads / 33
        )
        messages = generate(spec, rng=rng, now=NOW)  # type: ignore[assignment]
    count = 0
    with path.open("wb") as f:
        for event in messages:
            f.write(orjson.dumps(event.to_segment()) + b"\n")
            count += 1
    return path, count


def wal_bytes(url: str) -> int:
    """The size of a SQLite store's WAL file (0: none, or not a SQLite URL)."""
    wal = Path(f"{url.removeprefix('sqlite:///')}-wal")
    return wal.stat().st_size if url.startswith("sqlite:///") and wal.exists() else 0


def arguments() -> argparse.Namespace:
    """`--events N` (the file's size, about) and `--runs N` (how many timed runs)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--leads", type=int, default=None, help="spread the messages over this many leads"
    )
    return parser.parse_args()


def median_of(runs: int, work: Callable[[], None]) -> tuple[float, list[float]]:
    """Median wall time of several runs of `work`, and all the times."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def run(cmd: list[str], **kwargs: object) -> None:
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )
