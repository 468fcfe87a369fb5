"""`qualify score` over a generated ~1,000,000-message file with the 20-rule demo model.

Goal: ≥ 100,000 events/s in one process. Baseline, side by side: just decoding the same
file's JSON lines with orjson (the floor any scorer of this file pays).

    python bench/score_file.py [--events 1000000] [--runs 3]
"""

from __future__ import annotations

import subprocess
import sys

import orjson

from common import arguments, events_file, machine, median_of, model_path


def main() -> None:
    args = arguments()
    path, count = events_file(args.events)
    model = model_path()

    def score() -> None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "qualify",
                "score",
                str(model),
                str(path),
                "--json",
                "--as-of",
                "2026-09-21T00:00:00Z",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def decode_only() -> None:
        with path.open("rb") as f:
            for line in f:
                orjson.loads(line)

    scored, score_times = median_of(args.runs, score)
    decoded, decode_times = median_of(args.runs, decode_only)
    print(f"decode runs: {decode_times}")
    print(f"machine: {machine()}")
    print(f"file: {count:,} messages ({path.stat().st_size / 1e6:.0f} MB), model: 20 rules")
    print(
        f"qualify score --json: median {scored:.2f}s of {args.runs} "
        f"({', '.join(f'{t:.2f}' for t in score_times)}) = {count / scored:,.0f} events/s"
    )
    print(f"baseline orjson decode only: median {decoded:.2f}s = {count / decoded:,.0f} events/s")
    print(f"ratio: scoring runs at {decoded / scored:.1%} of the speed of bare JSON decoding")


if __name__ == "__main__":
    main()
