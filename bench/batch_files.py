"""`qualify batch --events` end to end on the same messages as JSON Lines, as Parquet, and
as a folder of gzipped JSON Lines parts.

The demo file is written once more as a Parquet table, as a warehouse export would hold it
(a column per message field, `properties`, `traits` and `context` as JSON text), and once
as 20 gzipped parts in a folder, as Segment's S3 export writes a history; each run is
`qualify batch model.yaml --events PATH --out scores.parquet` as a user runs it (start-up,
input pass, plan, writing the scores), the inputs alternating. `--jobs 1` adds runs with
the files read by the command's own process.

    python bench/batch_files.py [--events 1000000] [--runs 3] [--jobs-1]
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from common import OUT, events_file, machine, model_path

FIELDS = ("type", "messageId", "timestamp", "userId", "anonymousId", "event", "name")
FIELDS += ("groupId", "previousId")
OBJECTS = ("properties", "traits", "context")


def parquet_of(jsonl: Path) -> Path:
    """The JSON Lines file as a Parquet table (kept in bench/out)."""
    path = jsonl.with_suffix(".parquet")
    if path.exists() and path.stat().st_mtime > jsonl.stat().st_mtime:
        return path
    columns: dict[str, list[str | None]] = {name: [] for name in FIELDS + OBJECTS}
    with jsonl.open("rb") as lines:
        for line in lines:
            message = orjson.loads(line)
            for name in FIELDS:
                columns[name].append(message.get(name))
            for name in OBJECTS:
                value = message.get(name)
                columns[name].append(None if value is None else orjson.dumps(value).decode())
    table = pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})
    pq.write_table(table, path)
    return path


def gzipped_parts(jsonl: Path, parts: int = 20) -> Path:
    """The JSON Lines file cut into `parts` gzipped files in a folder (kept in bench/out)."""
    folder = jsonl.with_name(jsonl.stem + "-parts")
    if folder.is_dir() and len(list(folder.glob("*.gz"))) == parts:
        return folder
    folder.mkdir(exist_ok=True)
    lines = jsonl.read_bytes().splitlines(keepends=True)
    size = -(-len(lines) // parts)
    for i in range(parts):
        data = b"".join(lines[i * size : (i + 1) * size])
        (folder / f"part-{i:05}.jsonl.gz").write_bytes(gzip.compress(data, compresslevel=6))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs-1", action="store_true", help="also read in one process")
    args = parser.parse_args()
    model = model_path()
    jsonl, count = events_file(args.events)
    parquet = parquet_of(jsonl)
    parts = gzipped_parts(jsonl)
    variants = [("JSON Lines", jsonl, []), ("Parquet", parquet, []), ("gzipped parts", parts, [])]
    if args.jobs_1:
        variants += [("JSON Lines, --jobs 1", jsonl, ["--jobs", "1"])]
        variants += [("Parquet, --jobs 1", parquet, ["--jobs", "1"])]
    times: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    for _ in range(args.runs):
        for label, path, extra in variants:
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "qualify", "batch", str(model), "--events", str(path),
                 "--as-of", "2026-09-21T00:00:00Z", "--out", str(OUT / "files-scores.parquet"),
                 *extra],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            times[label].append(time.perf_counter() - start)
    print(f"machine: {machine()}")
    print(f"messages: {count:,} ({jsonl.name}, {parquet.name}, {parts.name}/)")
    for label, runs in times.items():
        median = statistics.median(runs)
        listed = ", ".join(f"{t:.1f}" for t in runs)
        print(f"qualify batch --events ({label}): median {median:.1f}s ({listed})")


if __name__ == "__main__":
    main()
