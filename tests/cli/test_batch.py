"""`qualify batch` from the command line: the worked example of the contract, scored in
bulk on DuckDB, equals `qualify score`; results go to Parquet or CSV; bad input is reported."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

FIXTURES = Path(__file__).parent.parent / "fixtures"
WORKED = FIXTURES / "worked_example.yaml"
AS_OF = "2026-03-12T12:00:00Z"


def qualify(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "qualify", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(cwd)},
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def messages(user: str, second: str) -> list[dict]:
    base = {"userId": user}
    return [
        {**base, "type": "identify", "timestamp": "2026-03-01T09:00:00Z",
         "traits": {"industry": "Financial Services", "company_size": "800"}},
        {**base, "type": "track", "event": "Content Downloaded",
         "timestamp": "2026-03-01T10:00:00Z",
         "properties": {"content_type": "whitepaper", "topic": "compliance"}},
        {**base, "type": "track", "event": "Webinar Attended", "timestamp": "2026-03-02T10:00:00Z"},
        {**base, "type": "page", "name": "Pricing", "properties": {"path": "/pricing"},
         "timestamp": "2026-03-03T10:00:00Z"},
        {**base, "type": "page", "name": "Pricing", "properties": {"path": "/pricing"},
         "timestamp": f"{second}T10:00:00Z"},
    ]  # fmt: skip


def write(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_batch_equals_score_on_the_worked_example(tmp_path: Path) -> None:
    """105 points → MQL; the same pricing visits 8 days apart → 75, not an MQL."""
    events = write(
        tmp_path / "e.jsonl", messages("ana", "2026-03-09") + messages("ben", "2026-03-11")
    )
    done = qualify("batch", str(WORKED), "--events", str(events), "--as-of", AS_OF, "--json",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    batch = {row["lead_id"]: row for row in map(json.loads, done.stdout.splitlines())}
    live_out = qualify("score", str(WORKED), str(events), "--as-of", AS_OF, "--json", cwd=tmp_path)
    live = {row["lead"]: row for row in map(json.loads, live_out.stdout.splitlines())}
    assert set(batch) == set(live) == {"ana", "ben"}
    for lead, row in live.items():
        for key in ("fit", "engagement", "score", "mql", "pql", "tier", "grade"):
            assert batch[lead][key] == row[key], (lead, key)
        for c in row["contributions"]:
            assert batch[lead]["rule:" + c["rule"]] == c["points"]
    assert batch["ana"]["mql"] and not batch["ben"]["mql"]


def test_batch_writes_parquet_and_csv_and_reports_bad_lines(tmp_path: Path) -> None:
    events = write(tmp_path / "e.jsonl", [*messages("ana", "2026-03-09"), "{not json"])
    parquet = tmp_path / "scores.parquet"
    done = qualify("batch", str(WORKED), "--events", str(events), "--as-of", AS_OF,
                   "--out", str(parquet), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1  # the good lines are scored, the bad one reported
    assert "e.jsonl:6" in done.stderr and "1 leads" in done.stderr
    rows = pq.read_table(parquet).to_pylist()
    assert [r["lead_id"] for r in rows] == ["ana"] and rows[0]["mql"] is True
    target = tmp_path / "scores.csv"
    qualify("batch", str(WORKED), "--events", str(events), "--as-of", AS_OF, "--out",
            str(target), cwd=tmp_path)  # fmt: skip
    with target.open() as f:
        assert [r["lead_id"] for r in csv.DictReader(f)] == ["ana"]
    wrong = qualify("batch", str(WORKED), "--events", str(events), "--out", "x.txt", cwd=tmp_path)
    assert wrong.returncode == 2 and ".parquet or .csv" in wrong.stderr


def test_batch_scores_a_store_and_needs_one_input(tmp_path: Path) -> None:
    events = write(
        tmp_path / "e.jsonl", messages("ana", "2026-03-09") + messages("ben", "2026-03-11")
    )
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert qualify("model", "activate", str(WORKED), "--db", db, cwd=tmp_path).returncode == 0
    assert qualify("ingest", str(events), "--db", db, cwd=tmp_path).returncode == 0
    done = qualify("batch", str(WORKED), "--db", db, "--as-of", AS_OF, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {row["lead_id"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert rows["ana"]["score"] == 105 and rows["ana"]["mql"]
    assert rows["ben"]["score"] == 75 and not rows["ben"]["mql"]
    neither = qualify("batch", str(WORKED), cwd=tmp_path)
    assert neither.returncode == 2 and "--events FILE.jsonl, or --db URL" in neither.stderr
