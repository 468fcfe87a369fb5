"""Several workers, several clients, the same leads: no update may be lost.

Eight clients send interleaved messages about the same 50 leads to a multi-worker server;
the stored scores must equal a serial replay of the same messages.
"""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from qualify.core.activity import decode_message
from qualify.core.scoring import CompiledModel
from qualify.model import load_model
from qualify.service.stateless import score_events
from serving import FIXTURES, fresh_database, start_service, stop_service

LEADS, CLIENTS = 50, 8
DAY0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def messages(rng: random.Random) -> list[dict]:
    out: list[dict] = []
    for i in range(LEADS):
        user, anonymous = f"lead-{i}", f"visitor-{i}"

        def at(days: float) -> str:
            return (DAY0 + timedelta(days=days)).isoformat()

        out.append(
            {
                "type": "identify",
                "userId": user,
                "anonymousId": anonymous,  # merges the visitor's history, in whatever order
                "traits": {
                    "industry": rng.choice(["Financial Services", "Retail"]),
                    "company_size": rng.choice([50, 500, 5000]),
                },
                "timestamp": at(0),
            }
        )
        for _ in range(rng.randint(4, 12)):
            when = at(rng.uniform(0, 20))
            who = {"anonymousId": anonymous} if rng.random() < 0.3 else {"userId": user}
            kind = rng.random()
            if kind < 0.4:
                out.append(
                    {"type": "page", "properties": {"path": "/pricing"}, "timestamp": when, **who}
                )
            elif kind < 0.7:
                out.append({"type": "track", "event": "Webinar Attended", "timestamp": when, **who})
            else:
                props = {"content_type": "whitepaper", "topic": "compliance"}
                out.append(
                    {
                        "type": "track",
                        "event": "Content Downloaded",
                        "properties": props,
                        "timestamp": when,
                        **who,
                    }
                )
    for n, message in enumerate(out):
        message["messageId"] = f"m-{n}"
    return out


def send(base: str, key: str, stream: list[dict], seed: int, failures: list[str]) -> None:
    """One client: its share of the messages, in batches of 1 to 8."""
    local = random.Random(seed)
    with httpx.Client(base_url=base, auth=(key, ""), timeout=60) as http:
        position = 0
        while position < len(stream):
            size = local.randint(1, 8)
            batch = stream[position : position + size]
            position += size
            response = http.post("/v1/batch", json={"batch": batch})
            if response.status_code != 200:
                failures.append(f"{response.status_code}: {response.text}")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "workers"), [("sqlite", 2), pytest.param("postgres", 4, marks=pytest.mark.postgres)]
)
def test_concurrent_clients_lose_no_update(backend: str, workers: int, tmp_path: Path) -> None:
    rng = random.Random(7)
    sent = messages(rng)
    rng.shuffle(sent)
    streams = [sent[i::CLIENTS] for i in range(CLIENTS)]
    for db in fresh_database(backend, tmp_path):
        service = start_service(db, "--workers", str(workers))
        try:
            failures: list[str] = []
            key = service.keys["write"]
            threads = [
                threading.Thread(target=send, args=(service.base, key, s, i, failures))
                for i, s in enumerate(streams)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert failures == [], (failures[:3], service.output()[-2000:])
            with service.client("read") as api:
                stored = {
                    lead["id"]: lead
                    for lead in api.get("/api/leads", params={"limit": 1000})
                    .raise_for_status()
                    .json()["leads"]
                }
                detail = {i: api.get(f"/api/leads/{i}").json() for i in list(stored)[:10]}
        finally:
            stop_service(service)

    compiled = CompiledModel(load_model((FIXTURES / "worked_example.yaml").read_text()))
    as_of = (DAY0 + timedelta(days=60)).timestamp()
    expected = {
        lead: result
        for lead, result, _ in score_events(compiled, [decode_message(m) for m in sent], as_of)
    }
    assert set(stored) == set(expected) and len(stored) == LEADS
    for lead, result in expected.items():
        row = stored[lead]
        got = (row["score"], row["fit"], row["engagement"], row["mql"])
        assert got == (result.score, result.fit, result.engagement, result.mql), lead
    for lead, item in detail.items():
        points = {c["rule"]: c["points"] for c in item["contributions"]}
        assert points == expected[lead].rule_points(), lead
