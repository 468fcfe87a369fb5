"""`qualify batch` from the command line: the worked example of the contract, scored in
bulk on DuckDB, equals `qualify score`; results go to Parquet or CSV; bad input is reported."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from helpers import jsonl, qualify, seed
from qualify.batch.engine import open_backend
from qualify.batch.jsonl import CHUNK_BYTES
from qualify.errors import QualifyError
from serving import fresh_database

FIXTURES = Path(__file__).parent.parent / "fixtures"
WORKED = FIXTURES / "worked_example.yaml"
AS_OF = "2026-03-12T12:00:00Z"


def test_batch_equals_score_on_the_worked_example(tmp_path: Path) -> None:
    """105 points → MQL; the same pricing visits 8 days apart → 75, not an MQL."""
    events = jsonl(tmp_path / "e.jsonl", seed("ana", "2026-03-09") + seed("ben", "2026-03-11"))
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
    events = jsonl(tmp_path / "e.jsonl", [*seed("ana", "2026-03-09"), "{not json"])
    parquet = tmp_path / "scores.parquet"
    done = qualify("batch", str(WORKED), "--events", str(events), "--as-of", AS_OF,
                   "--out", str(parquet), cwd=tmp_path, check=False)  # fmt: skip
    assert done.returncode == 1  # the good lines are scored, the bad one reported
    assert "e.jsonl:6" in done.stderr and "1 leads" in done.stderr
    rows = pq.read_table(parquet).to_pylist()
    assert [r["lead_id"] for r in rows] == ["ana"] and rows[0]["mql"] is True
    target = tmp_path / "scores.csv"
    qualify("batch", str(WORKED), "--events", str(events), "--as-of", AS_OF, "--out",
            str(target), cwd=tmp_path, check=False)  # fmt: skip
    with target.open() as f:
        assert [r["lead_id"] for r in csv.DictReader(f)] == ["ana"]
    wrong = qualify(
        "batch", str(WORKED), "--events", str(events), "--out", "x.txt", cwd=tmp_path, check=False
    )
    assert wrong.returncode == 2 and ".parquet or .csv" in wrong.stderr


@pytest.mark.slow
def test_batch_decodes_a_large_file_in_several_processes_as_in_one(tmp_path: Path) -> None:
    """A file of several 16 MB ranges, decoded by two worker processes, scores exactly as
    when this process decodes it alone; its bad line is reported with the same number."""
    messages: list = []
    for i in range(60_000):  # two of three see pricing twice in 7 days: MQLs
        messages += seed(f"lead{i:05d}", "2026-03-09" if i % 3 else "2026-03-11")
        if i == 40_000:
            messages.append("{not json")
    events = jsonl(tmp_path / "big.jsonl", messages)
    assert events.stat().st_size > 2 * CHUNK_BYTES
    bad = f"big.jsonl:{messages.index('{not json') + 1}: skipped"
    scores = []
    for jobs in ("1", "2"):
        arguments = ("--events", str(events), "--as-of", AS_OF, "--json", "--jobs", jobs)
        done = qualify("batch", str(WORKED), *arguments, cwd=tmp_path, check=False)
        assert done.returncode == 1 and bad in done.stderr, done.stderr
        scores.append({row["lead_id"]: row for row in map(json.loads, done.stdout.splitlines())})
    assert len(scores[0]) == 60_000 and scores[0] == scores[1]
    assert sum(row["mql"] for row in scores[0].values()) == 40_000


def test_batch_scores_a_store_and_needs_one_input(tmp_path: Path) -> None:
    events = jsonl(tmp_path / "e.jsonl", seed("ana", "2026-03-09") + seed("ben", "2026-03-11"))
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert qualify("model", "activate", str(WORKED), "--db", db, cwd=tmp_path).returncode == 0
    assert qualify("ingest", str(events), "--db", db, cwd=tmp_path).returncode == 0
    done = qualify("batch", str(WORKED), "--db", db, "--as-of", AS_OF, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {row["lead_id"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert rows["ana"]["score"] == 105 and rows["ana"]["mql"]
    assert rows["ben"]["score"] == 75 and not rows["ben"]["mql"]
    neither = qualify("batch", str(WORKED), cwd=tmp_path, check=False)
    assert neither.returncode == 2 and "--events FILE.jsonl, or --db URL" in neither.stderr
    for args, reason in (
        (["--events", str(events), "--write-back"], "--write-back stores scores in a store"),
        (["--db", db, "--json", "--out", str(tmp_path / "s.csv")], "use one"),
    ):
        wrong = qualify("batch", str(WORKED), *args, cwd=tmp_path, check=False)
        assert wrong.returncode == 2 and reason in wrong.stderr, wrong.stderr


@pytest.fixture
def pg_store(tmp_path: Path) -> Iterator[str]:
    """A new database on the PostgreSQL server."""
    yield from fresh_database("postgres", tmp_path)


@pytest.mark.postgres
def test_batch_on_postgres_scores_the_store_in_place(tmp_path: Path, pg_store: str) -> None:
    events = jsonl(tmp_path / "e.jsonl", seed("ana", "2026-03-09") + seed("ben", "2026-03-11"))
    qualify("model", "activate", str(WORKED), "--db", pg_store, cwd=tmp_path)
    qualify("ingest", str(events), "--db", pg_store, cwd=tmp_path)
    out = tmp_path / "scores.csv"
    done = qualify("batch", str(WORKED), "--db", pg_store, "--engine", "postgres",
                   "--as-of", AS_OF, "--out", str(out), cwd=tmp_path)  # fmt: skip
    assert "postgres: 2 leads" in done.stderr
    with out.open() as f:
        rows = {r["lead_id"]: r for r in csv.DictReader(f)}
    assert float(rows["ana"]["score"]) == 105 and rows["ana"]["mql"] == "true"
    assert float(rows["ben"]["score"]) == 75 and rows["ben"]["mql"] == "false"


@pytest.mark.postgres
def test_batch_on_postgres_says_what_to_grant_a_role_refused_temporary_tables(
    tmp_path: Path, pg_store: str
) -> None:
    """The plan keeps its events in temporary tables: a role that may read the store but not
    create them gets the GRANT to ask for, before any work, not PostgreSQL's bare refusal."""
    events = jsonl(tmp_path / "e.jsonl", seed("ana", "2026-03-09"))
    qualify("model", "activate", str(WORKED), "--db", pg_store, cwd=tmp_path)
    qualify("ingest", str(events), "--db", pg_store, cwd=tmp_path)
    role = f"qualify_reader_{uuid.uuid4().hex[:8]}"
    database = make_url(pg_store).database
    admin = create_engine(pg_store, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(text(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC'))
        conn.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"'))
    reader = make_url(pg_store).set(username=role).render_as_string(hide_password=False)
    try:
        refused = qualify("batch", str(WORKED), "--db", reader, "--engine", "postgres",
                          "--json", cwd=tmp_path, check=False)  # fmt: skip
        assert refused.returncode == 2 and refused.stdout == ""
        assert f'GRANT TEMPORARY ON DATABASE "{database}" TO "{role}"' in refused.stderr
        with admin.connect() as conn:  # granted as told, the same command scores the store
            conn.execute(text(f'GRANT TEMPORARY ON DATABASE "{database}" TO "{role}"'))
        done = qualify("batch", str(WORKED), "--db", reader, "--engine", "postgres",
                       "--as-of", AS_OF, "--json", cwd=tmp_path)  # fmt: skip
        assert json.loads(done.stdout)["lead_id"] == "ana"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()


def test_batch_reads_only_a_store_and_refuses_other_databases_and_outputs(
    tmp_path: Path,
) -> None:
    """`--db` is only read: another application's database (a mistyped URL) is refused and
    left as it was, not given our tables; an output that cannot be written is refused
    before any work."""
    other = tmp_path / "crm.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE contacts (id INTEGER)")
    done = qualify("batch", str(WORKED), "--db", f"sqlite:///{other}", "--json",
                   cwd=tmp_path, check=False)  # fmt: skip
    assert done.returncode == 2 and "holds no Qualify store" in done.stderr
    with sqlite3.connect(other) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert tables == {"contacts"}
    events = jsonl(tmp_path / "e.jsonl", seed("ana", "2026-03-09"))
    (tmp_path / "taken.csv").mkdir()
    for out, reason in (
        (tmp_path / "missing" / "x.csv", "there is no folder"),
        (tmp_path / "taken.csv", "is a folder"),
    ):
        refused = qualify("batch", str(WORKED), "--events", str(events), "--out", str(out),
                          cwd=tmp_path, check=False)  # fmt: skip
        assert refused.returncode == 2 and reason in refused.stderr, refused.stderr


@pytest.mark.postgres
def test_batch_on_a_missing_postgres_database_says_so(tmp_path: Path, pg_store: str) -> None:
    missing = make_url(pg_store).set(database="qualify_no_such_db").render_as_string(False)
    for engine in ("postgres", "duckdb"):
        done = qualify("batch", str(WORKED), "--db", missing, "--engine", engine,
                       cwd=tmp_path, check=False)  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert 'database "qualify_no_such_db" does not exist' in done.stderr
    with pytest.raises(QualifyError, match="--engine postgres cannot connect"):
        open_backend("postgres", url=missing)  # the service's bulk activation opens it so


def test_batch_on_postgres_needs_a_postgresql_store(tmp_path: Path) -> None:
    events = jsonl(tmp_path / "e.jsonl", seed("ana", "2026-03-09"))
    no_db = qualify("batch", str(WORKED), "--events", str(events), "--engine", "postgres",
                    cwd=tmp_path, check=False)  # fmt: skip
    assert no_db.returncode == 2 and "--db postgresql://" in no_db.stderr
    sqlite = qualify("batch", str(WORKED), "--db", f"sqlite:///{tmp_path / 'q.db'}",
                     "--engine", "postgres", cwd=tmp_path, check=False)  # fmt: skip
    assert sqlite.returncode == 2 and "is not one" in sqlite.stderr


@pytest.mark.spark
@pytest.mark.slow
def test_batch_on_spark_equals_the_live_engine(tmp_path: Path) -> None:
    events = jsonl(tmp_path / "e.jsonl", seed("ana", "2026-03-09") + seed("ben", "2026-03-11"))
    done = qualify("batch", str(WORKED), "--events", str(events), "--engine", "spark",
                   "--spark-master", "local[1]", "--as-of", AS_OF, "--json",
                   cwd=tmp_path)  # fmt: skip
    rows = {row["lead_id"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert rows["ana"]["score"] == 105 and rows["ana"]["mql"]
    assert rows["ben"]["score"] == 75 and not rows["ben"]["mql"]


def _scores(done: subprocess.CompletedProcess) -> dict:
    rows = {row["lead_id"]: row for row in map(json.loads, done.stdout.splitlines())}
    return {lead: (r["score"], r["mql"], r["tier"], r["grade"]) for lead, r in rows.items()}


def test_batch_reads_parquet_and_csv_tables_as_it_reads_json_lines(tmp_path: Path) -> None:
    messages = seed("ana", "2026-03-09") + seed("ben", "2026-03-11")
    events = jsonl(tmp_path / "e.jsonl", messages)
    expected = _scores(qualify("batch", str(WORKED), "--events", str(events), "--as-of", AS_OF,
                               "--json", cwd=tmp_path))  # fmt: skip
    assert expected["ana"][:2] == (105, True)
    # Parquet as an export writes it: Parquet timestamps, objects as JSON text, a bad row.
    bad = {"type": "bogus", "userId": "x", "timestamp": "2026-03-01T09:00:00Z"}
    rows = [*messages, bad]
    table = pa.table(
        {
            "type": [m["type"] for m in rows],
            "userId": [m["userId"] for m in rows],
            "timestamp": pa.array(
                [datetime.fromisoformat(m["timestamp"]) for m in rows], pa.timestamp("ms", "UTC")
            ),
            "event": [m.get("event") for m in rows],
            "name": [m.get("name") for m in rows],
            "properties": [
                json.dumps(m["properties"]) if "properties" in m else None for m in rows
            ],
            "traits": [json.dumps(m["traits"]) if "traits" in m else None for m in rows],
        }
    )
    pq.write_table(table, tmp_path / "e.parquet")
    done = qualify("batch", str(WORKED), "--events", str(tmp_path / "e.parquet"),
                   "--as-of", AS_OF, "--json", cwd=tmp_path, check=False)  # fmt: skip
    assert done.returncode == 1 and "e.parquet:11" in done.stderr, done.stderr  # by number
    assert _scores(done) == expected, done.stderr
    # `qualify ingest` reads the same table into a store (the bad row reported the same way);
    # `qualify score`, which reads JSON Lines only, says where tables go
    db = f"sqlite:///{tmp_path / 'tables.db'}"
    qualify("model", "activate", str(WORKED), "--db", db, cwd=tmp_path)
    ingested = qualify("ingest", str(tmp_path / "e.parquet"), "--db", db, cwd=tmp_path,
                       check=False)  # fmt: skip
    assert ingested.returncode == 1 and "e.parquet:11" in ingested.stderr, ingested.stderr
    stored = _leads(db, tmp_path)
    assert (stored["ana"][1], stored["ben"][1]) == (105, 75)  # (stage, score, ...)
    refused = qualify("score", str(WORKED), str(tmp_path / "e.parquet"), cwd=tmp_path,
                      check=False)  # fmt: skip
    assert refused.returncode == 2 and "qualify batch" in refused.stderr
    # CSV: one column per field, the rest are properties (track, page) or traits (identify).
    fields = ["type", "userId", "timestamp", "event", "name"]
    extra = sorted(
        {k for m in messages for k in {**m.get("properties", {}), **m.get("traits", {})}}
    )
    with (tmp_path / "e.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, [*fields, *extra])
        writer.writeheader()
        for m in messages:
            writer.writerow({**{k: m.get(k, "") for k in fields}, **m.get("properties", {}),
                             **m.get("traits", {})})  # fmt: skip
    done = qualify("batch", str(WORKED), "--events", str(tmp_path / "e.csv"), "--as-of", AS_OF,
                   "--json", cwd=tmp_path)  # fmt: skip
    assert _scores(done) == expected
    # Rows without a time take the time of the import, as `qualify ingest` gives them.
    with (tmp_path / "untimed.csv").open("w", newline="") as f:
        f.write("type,userId,event\ntrack,cleo,Webinar Attended\n")
    untimed = _scores(qualify("batch", str(WORKED), "--events", str(tmp_path / "untimed.csv"),
                              "--json", cwd=tmp_path))  # fmt: skip
    assert untimed["cleo"][0] == 20


def _leads(db: str, cwd: Path) -> dict:
    done = qualify("leads", "--db", db, "--json", cwd=cwd)
    keys = ("stage", "score", "fit", "engagement", "mql", "tier", "grade", "owner", "routing")
    return {r["id"]: tuple(r[k] for k in keys) for r in json.loads(done.stdout)}


def test_model_activate_in_bulk_and_batch_write_back(tmp_path: Path) -> None:
    """`qualify model activate --engine duckdb` leaves a store as the live engine's
    activation does; `qualify batch --db --write-back` refreshes it with its active model."""
    events = jsonl(tmp_path / "e.jsonl", seed("ana", "2026-03-09") + seed("ben", "2026-03-11"))
    bulk, live = (f"sqlite:///{tmp_path / name}" for name in ("bulk.db", "live.db"))
    for db in (bulk, live):
        qualify("model", "activate", str(WORKED), "--db", db, cwd=tmp_path)
        qualify("ingest", str(events), "--db", db, cwd=tmp_path)
    lower = tmp_path / "lower.yaml"  # ben's 75 points now make an MQL too
    lower.write_text(
        WORKED.read_text()
        .replace("version: 1", "version: 2")
        .replace("score_at_least: 100", "score_at_least: 70")
    )
    done = qualify("model", "activate", str(lower), "--db", bulk, "--engine", "duckdb",
                   cwd=tmp_path)  # fmt: skip
    assert "2 leads rescored" in done.stdout and "1 new MQLs" in done.stdout
    qualify("model", "activate", str(lower), "--db", live, cwd=tmp_path)
    assert _leads(bulk, tmp_path) == _leads(live, tmp_path)
    assert _leads(bulk, tmp_path)["ben"][:2] == ("mql", 75)
    # explaining a written-back lead: every point with its events (its state is rebuilt)
    explained = [
        json.loads(qualify("explain", "ben", "--db", db, "--json", cwd=tmp_path).stdout)
        for db in (bulk, live)
    ]
    assert explained[0]["contributions"] == explained[1]["contributions"]
    assert [len(c["events"]) for c in explained[0]["contributions"]] == [0, 0, 1, 1]

    other = qualify("batch", str(WORKED), "--db", bulk, "--write-back", cwd=tmp_path, check=False)
    assert other.returncode == 2 and "qualify model activate MODEL --engine duckdb" in other.stderr
    done = qualify("batch", str(lower), "--db", bulk, "--write-back", cwd=tmp_path)
    assert "2 leads written back" in done.stderr and "0 new MQLs" in done.stderr
    assert _leads(bulk, tmp_path) == _leads(live, tmp_path)
    past = qualify("batch", str(lower), "--db", bulk, "--write-back", "--as-of", AS_OF,
                   cwd=tmp_path, check=False)  # fmt: skip
    assert past.returncode == 2 and "leave out --as-of" in past.stderr
    no_store = qualify("batch", str(lower), "--events", str(events), "--write-back",
                       cwd=tmp_path, check=False)  # fmt: skip
    assert no_store.returncode == 2 and "give --db URL" in no_store.stderr
    pg = qualify("model", "activate", str(lower), "--db", bulk, "--engine", "postgres",
                 cwd=tmp_path, check=False)  # fmt: skip
    assert pg.returncode == 2 and "use --engine duckdb" in pg.stderr


def test_batch_reads_a_folder_of_part_files_as_one_history(tmp_path: Path) -> None:
    """An export's folder: part files of JSON Lines (one gzipped) and Parquet, in the
    order of their names, with the files Spark writes beside them left out; then a
    gzipped CSV file. Identity and
    copies of a messageId span the files: an anonymous visitor of the first file is
    identified in the second, and the second repeats a message of the first. The scores
    equal those of one file holding the same lines in the same order."""
    import gzip

    messages = [{**m, "messageId": f"m{i}"} for i, m in enumerate(seed("ana", "2026-03-09"))]
    identify, download, webinar, pricing, pricing_again = messages
    anonymous = [{**m, "anonymousId": "visitor"} for m in (download, pricing)]
    for m in anonymous:
        del m["userId"]
    identify = {**identify, "anonymousId": "visitor"}
    first = [anonymous[0], anonymous[1]]
    second = [identify, anonymous[0], webinar]  # anonymous[0] again: a copy
    third = [pricing_again, *seed("ben", "2026-03-11")]
    export = tmp_path / "export"
    (export / "day=2").mkdir(parents=True)
    jsonl(export / "part-00000.jsonl", [*first, "{not json"])
    with gzip.open(export / "part-00001.json.gz", "wt") as gz:
        gz.write("".join(json.dumps(m) + "\n" for m in second))
    table = pa.table(
        {
            "type": [m["type"] for m in third],
            "messageId": [m.get("messageId") for m in third],
            "userId": [m["userId"] for m in third],
            "timestamp": [m["timestamp"] for m in third],
            "event": [m.get("event") for m in third],
            "name": [m.get("name") for m in third],
            "properties": [json.dumps(m["properties"]) if "properties" in m else None
                           for m in third],
            "traits": [json.dumps(m["traits"]) if "traits" in m else None for m in third],
        }
    )  # fmt: skip
    pq.write_table(table, export / "day=2" / "part-00002.parquet")
    (export / "_SUCCESS").write_text("")
    (export / ".part-00000.jsonl.crc").write_bytes(b"\x00\x01")
    (export / "day=2" / "_committed_1").write_text("{}")
    late = [{**m, "messageId": f"cy{i}"} for i, m in enumerate(seed("cy", "2026-03-10"))]
    extra = tmp_path / "late.csv.gz"  # a gzipped CSV: the rest of a row are its properties
    fields = ["type", "messageId", "userId", "timestamp", "event", "name"]
    keys = sorted({k for m in late for k in {**m.get("properties", {}), **m.get("traits", {})}})
    with gzip.open(extra, "wt", newline="") as gz:
        writer = csv.writer(gz)
        writer.writerow(fields + keys)
        for m in late:
            values = {**m.get("properties", {}), **m.get("traits", {})}
            writer.writerow([m.get(f, "") for f in fields] + [values.get(k, "") for k in keys])
    one = jsonl(tmp_path / "one.jsonl", [*first, *second, *third, *late])
    expected = _scores(qualify("batch", str(WORKED), "--events", str(one), "--as-of", AS_OF,
                               "--json", cwd=tmp_path))  # fmt: skip
    assert set(expected) == {"ana", "ben", "cy"}  # the visitor is ana
    assert expected["ana"][:2] == (105, True)
    done = qualify("batch", str(WORKED), "--events", str(export), "--events", str(extra),
                   "--as-of", AS_OF, "--json", "--jobs", "2", cwd=tmp_path,
                   check=False)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"{export / 'part-00000.jsonl'}:3: skipped" in done.stderr  # its own line number
    assert done.stderr.count("skipped") == 1  # nothing read from `_SUCCESS`, `.crc`, `_c…`
    assert _scores(done) == expected


def test_batch_says_which_events_path_is_missing_or_empty(tmp_path: Path) -> None:
    (tmp_path / "empty" / "_temporary").mkdir(parents=True)
    (tmp_path / "empty" / "_SUCCESS").write_text("")
    for path, said in ((tmp_path / "nowhere", "no such file or folder"),
                       (tmp_path / "empty", "no files of messages in the folder")):  # fmt: skip
        done = qualify("batch", str(WORKED), "--events", str(path), cwd=tmp_path, check=False)
        assert done.returncode == 2 and said in done.stderr, done.stderr
