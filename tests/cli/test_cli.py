"""The `qualify` command as a user runs it: a real process, real files, a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import jsonl, qualify, seed

FIXTURES = Path(__file__).parent.parent / "fixtures"
WORKED = FIXTURES / "worked_example.yaml"


def test_score_is_stateless_and_prints_one_json_object_per_lead(tmp_path: Path) -> None:
    events = jsonl(tmp_path / "e.jsonl", seed("ana") + seed("ben", "2026-03-12"))
    done = qualify(
        "score", str(WORKED), str(events), "--as-of", "2026-03-13T00:00:00Z", "--json", cwd=tmp_path
    )
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["lead"], r["score"], r["mql"]) for r in rows] == [
        ("ana", 105, True),
        ("ben", 75, False),
    ]
    assert set(rows[0]) >= {
        "lead",
        "fit",
        "engagement",
        "score",
        "mql",
        "pql",
        "tier",
        "grade",
        "contributions",
    }
    pricing = [c for c in rows[0]["contributions"] if c["rule"].startswith("pricing")]
    assert pricing[0]["points"] == 30 and len(pricing[0]["events"]) == 1
    assert not (tmp_path / "qualify.db").exists()


def test_score_table_and_malformed_lines_are_reported_with_their_number(tmp_path: Path) -> None:
    lines = [
        *seed("ana"),
        "{not json",
        {"type": "track", "userId": "x", "timestamp": "2026-03-02"},
        {"type": "track", "event": "Webinar Attended", "timestamp": "2026-03-02"},
    ]
    events = jsonl(tmp_path / "e.jsonl", lines)
    done = qualify(
        "score", str(WORKED), str(events), "--as-of", "2026-03-10", cwd=tmp_path, check=False
    )
    assert done.returncode == 1
    assert "ana" in done.stdout and "105" in done.stdout
    assert "e.jsonl:6: skipped: not valid JSON" in done.stderr
    assert "e.jsonl:7: skipped: a track message needs an `event` name" in done.stderr
    assert "e.jsonl:8: skipped: the message has neither `userId` nor `anonymousId`" in done.stderr


def test_ingest_then_query_explain_and_act(tmp_path: Path) -> None:
    qualify("model", "activate", str(WORKED), cwd=tmp_path)
    events = jsonl(tmp_path / "e.jsonl", [*seed("ana"), "oops", *seed("ben", "2026-03-12")])
    done = qualify("ingest", str(events), cwd=tmp_path, check=False)
    assert done.returncode == 1  # finished, but some lines were skipped
    assert "e.jsonl:6: skipped: not valid JSON" in done.stderr
    assert "10 messages ingested" in done.stdout and "1 new MQLs" in done.stdout
    again = qualify("ingest", str(events), cwd=tmp_path, check=False)
    assert "0 messages ingested, 10 duplicates ignored" in again.stdout

    listed = json.loads(qualify("leads", "--json", cwd=tmp_path).stdout)
    assert [(r["id"], r["stage"]) for r in listed] == [("ana", "mql"), ("ben", "lead")]
    mqls = json.loads(qualify("leads", "--stage", "mql", "--json", cwd=tmp_path).stdout)
    assert [r["id"] for r in mqls] == ["ana"]
    table = qualify("leads", cwd=tmp_path).stdout
    assert "ana" in table and "mql" in table

    explained = json.loads(qualify("explain", "ana", "--json", cwd=tmp_path).stdout)
    assert explained["score"] == 105
    assert {c["rule"] for c in explained["contributions"]} >= {"pricing page twice in a week"}
    assert explained["transitions"][0]["action"] == "qualify"
    human = qualify("explain", "ana", cwd=tmp_path).stdout
    assert "pricing page twice in a week" in human and "stage history" in human

    accepted = qualify("lead", "accept", "ana", "--by", "dan", "--budget", "yes", cwd=tmp_path)
    assert "ana: mql → sql (accept by dan)" in accepted.stdout
    refused = qualify("lead", "won", "ben", cwd=tmp_path, check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith(
        "error: cannot `won` lead `ben`: it is in stage `lead`"
    )
    no_reason = qualify("lead", "reject", "ana", cwd=tmp_path, check=False)
    assert no_reason.returncode == 2 and "needs a reason: add --reason" in no_reason.stderr
    assert "details" in qualify("explain", "ana", cwd=tmp_path).stdout
    qualify("lead", "reject", "ana", "--reason", "no budget", cwd=tmp_path)
    versions = qualify("model", "list", cwd=tmp_path).stdout
    assert "worked-example version 1" in versions


def test_ingest_csv_with_a_column_mapping(tmp_path: Path) -> None:
    qualify("model", "activate", str(WORKED), cwd=tmp_path)
    csv = tmp_path / "leads.csv"
    csv.write_text(
        "Email,Industry,Employees,When\n"
        "ana@fs.com,Financial Services,800,2026-03-01T00:00:00Z\n"
        ",Retail,10,2026-03-01T00:00:00Z\n"
    )
    done = qualify(
        "ingest",
        str(csv),
        "--map",
        "Email=userId",
        "--map",
        "Industry=traits.industry",
        "--map",
        "Employees=traits.company_size",
        "--map",
        "When=timestamp",
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 1
    assert "leads.csv:3: skipped: the message has neither `userId` nor `anonymousId`" in done.stderr
    (row,) = json.loads(qualify("leads", "--json", cwd=tmp_path).stdout)
    assert (row["id"], row["fit"]) == ("ana@fs.com", 25)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["score", "missing.yaml", "e.jsonl"], "error: no model file missing.yaml"),
        (["ingest", "e.jsonl", "--db", "sqlite:///nowhere/q.db"], "no store at nowhere/q.db"),
        (["leads", "--db", "mysql://localhost/x"], "SQLite or PostgreSQL, not `mysql`"),
        (["lead", "reject", "ana"], "needs a reason: add --reason TEXT"),
        (["leads", "--stage", "hot"], "error: unknown stage `hot`"),
        (["explain", "nobody"], "no store at qualify.db"),
        (
            ["ingest", "e.csv", "--map", "Emial=userId", "--db", "{store}"],
            "--map names column `Emial` that the file does not have; its columns are: Email",
        ),
        (["ingest", "e.csv", "--map", "Email"], "is not COLUMN=FIELD"),
        (["score", "{model}", "e.jsonl", "--as-of", "yesterday"], "not an ISO-8601 time"),
    ],
)
def test_errors_are_one_clear_line_and_exit_2(tmp_path: Path, args: list, message: str) -> None:
    jsonl(tmp_path / "e.jsonl", seed())
    (tmp_path / "e.csv").write_text("Email\na@b.c\n")
    qualify("model", "activate", str(WORKED), "--db", f"sqlite:///{tmp_path}/s.db", cwd=tmp_path)
    args = [
        a.replace("{model}", str(WORKED)).replace("{store}", f"sqlite:///{tmp_path}/s.db")
        for a in args
    ]
    done = qualify(*args, cwd=tmp_path, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_check_and_schema(tmp_path: Path) -> None:
    assert "ok — model `worked-example`" in qualify("check", str(WORKED), cwd=tmp_path).stdout
    schema = json.loads(qualify("schema", cwd=tmp_path).stdout)
    assert schema["title"] == "Qualify scoring model"


@pytest.mark.slow
def test_demo_builds_a_scored_store(tmp_path: Path) -> None:
    done = qualify("demo", "--leads", "300", cwd=tmp_path)
    assert "funnel" in done.stdout and "top" in done.stdout
    assert (tmp_path / "qualify.db").exists()
    listed = json.loads(qualify("leads", "--json", "--limit", "0", cwd=tmp_path).stdout)
    assert len(listed) >= 250
    assert any(r["stage"] == "mql" for r in listed)
    again = qualify("demo", "--leads", "300", cwd=tmp_path)  # a demo store is rebuilt
    assert "funnel" in again.stdout


def test_keys_are_shown_once_listed_without_secrets_and_revoked(tmp_path: Path) -> None:
    created = qualify("keys", "create", "--role", "sales", "--name", "crm", cwd=tmp_path)
    secret = created.stdout.strip()
    assert secret.startswith("qk_sales_") and len(secret) > 40
    assert "cannot be shown again" in created.stderr
    listed = json.loads(qualify("keys", "list", "--json", cwd=tmp_path).stdout)
    assert [(k["id"], k["role"], k["name"], k["revoked"]) for k in listed] == [
        (1, "sales", "crm", None)
    ]
    assert secret not in json.dumps(listed)
    assert listed[0]["prefix"].startswith("qk_sales_")
    qualify("keys", "revoke", "1", cwd=tmp_path)
    assert json.loads(qualify("keys", "list", "--json", cwd=tmp_path).stdout)[0]["revoked"]
    again = qualify("keys", "revoke", "1", cwd=tmp_path, check=False)
    assert again.returncode == 2
    assert "no live key #1" in again.stderr
    wrong = qualify("keys", "create", "--role", "boss", cwd=tmp_path, check=False)
    assert (wrong.returncode, "unknown role `boss`" in wrong.stderr) == (2, True)


def test_routing_from_the_command_line(tmp_path: Path) -> None:
    """MQLs are routed as they are ingested; owners filter the list; assign, route, members
    and one round of the worker (which finds the 3-second SLA breached)."""
    qualify("model", "activate", str(FIXTURES / "routed.yaml"), cwd=tmp_path)
    from datetime import UTC, datetime

    now = datetime.now(UTC).isoformat()
    messages = []
    for n, user in enumerate(("u1", "u2", "u3")):
        messages += [
            {"type": "identify", "userId": user, "traits": {"company_size": 5000 - n}},
            {"type": "track", "userId": user, "event": "Demo Requested", "timestamp": now},
        ]
        messages[-2]["timestamp"] = now
    qualify("ingest", str(jsonl(tmp_path / "m.jsonl", messages)), cwd=tmp_path)
    mine = json.loads(qualify("leads", "--owner", "ana", "--json", cwd=tmp_path).stdout)
    assert [(r["id"], r["team"], r["routing"]) for r in mine] == [("u1", "enterprise", "assign")]
    assert "ben" in qualify("leads", cwd=tmp_path).stdout  # the "routed to" column

    assigned = qualify("lead", "assign", "u1", "zoe", "--by", "boss", cwd=tmp_path)
    assert "u1: assigned to zoe — assigned to zoe by boss" in assigned.stdout
    assert "note: zoe is in no team of the active model's routing rules" in assigned.stderr
    to_ben = qualify("lead", "assign", "u3", "ben", cwd=tmp_path).stdout
    assert "u3: assigned to ben (enterprise)" in to_ben  # his team, from the model
    rerouted = qualify("lead", "route", "u1", cwd=tmp_path).stdout
    assert "u1: assigned to ana (enterprise)" in rerouted  # ana's turn comes round again
    qualify("members", "away", "ben", "--note", "holiday", cwd=tmp_path)
    members = json.loads(qualify("members", "list", "--json", cwd=tmp_path).stdout)
    ben = next(m for m in members if m["member"] == "ben")
    assert (ben["available"], ben["note"], ben["open_mqls"]) == (False, "holiday", 2)
    qualify("members", "back", "ben", cwd=tmp_path)

    import time

    time.sleep(3.2)  # the model's SLA is 3 seconds
    worked = qualify("worker", "--once", cwd=tmp_path).stdout
    assert "3 SLA breaches (3 reassigned)" in worked
    explained = json.loads(qualify("explain", "u2", "--json", cwd=tmp_path).stdout)
    history = explained["routing"]["history"]
    assert history[-1]["reason"].startswith("SLA breached by ben: ")
    assert explained["routing"]["sla"]["seconds_left"] > 0
    human = qualify("explain", "u2", cwd=tmp_path).stdout
    assert "routing" in human and "SLA breached by ben" in human


def test_webhook_subscriptions_from_the_command_line(tmp_path: Path) -> None:
    qualify("model", "activate", str(WORKED), cwd=tmp_path)
    added = qualify(
        "webhooks",
        "add",
        "http://127.0.0.1:9/hook",
        "--events",
        "lead.mql,lead.routed",
        cwd=tmp_path,
    )
    assert "webhook #1 → http://127.0.0.1:9/hook for lead.mql, lead.routed" in added.stderr
    assert added.stdout.strip().startswith("whsec_")
    qualify("ingest", str(jsonl(tmp_path / "e.jsonl", seed("ana"))), cwd=tmp_path)
    (listed,) = json.loads(qualify("webhooks", "list", "--json", cwd=tmp_path).stdout)
    assert listed["deliveries"] == {"pending": 2, "delivered": 0, "dead": 0, "cancelled": 0}
    assert "secret" not in listed
    typo = qualify(
        "webhooks", "add", "http://x.example", "--events", "lead.sql", cwd=tmp_path, check=False
    )
    assert typo.returncode == 2 and "unknown webhook event `lead.sql`" in typo.stderr
    assert "0 deliveries queued again" in qualify("webhooks", "replay", "1", cwd=tmp_path).stdout
    assert "webhook #1 stopped" in qualify("webhooks", "remove", "1", cwd=tmp_path).stdout
    (listed,) = json.loads(qualify("webhooks", "list", "--json", cwd=tmp_path).stdout)
    assert listed["active"] is False and listed["deliveries"]["cancelled"] == 2
    again = qualify("webhooks", "remove", "1", cwd=tmp_path, check=False)
    assert again.returncode == 2 and "no active webhook subscription #1" in again.stderr
