"""Routing through the running service: owners on the lead API, the owner filter, manual
assignment and re-routing, members' availability, and the SLA scheduler inside `serve`
(on SQLite, and on PostgreSQL with several workers)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from itertools import pairwise

import httpx
import pytest

from serving import Service, fresh_database, start_service, stop_service


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def routed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    workers = "1" if request.param == "sqlite" else "3"
    for db in fresh_database(request.param, tmp_path_factory.mktemp("routed")):
        running = start_service(
            db, "--workers", workers, "--schedule-every", "0.3", model="routed.yaml"
        )
        try:
            yield running
        finally:
            stop_service(running)


def mql_batch(users: list[str], size: int = 5000) -> dict:
    batch = []
    for user in users:
        batch.append({"type": "identify", "userId": user, "traits": {"company_size": size}})
        batch.append({"type": "track", "userId": user, "event": "Demo Requested"})
    for n, message in enumerate(batch):
        message["messageId"] = f"{message['userId']}-{n}"
    return {"batch": batch}


def test_mqls_round_robin_fairly_and_the_owner_filter_finds_them(routed: Service) -> None:
    tag = uuid.uuid4().hex[:6]
    users = [f"rr-{tag}-{n:03d}" for n in range(60)]
    with routed.client("write") as writer:
        for part in range(0, 60, 20):  # several requests, possibly to several workers
            answer = writer.post("/v1/batch", json=mql_batch(users[part : part + 20]))
            assert answer.status_code == 200
    with routed.client("read") as reader:
        _check_round_robin(reader, tag, users)


def _check_round_robin(reader: httpx.Client, tag: str, users: list[str]) -> None:
    owners = Counter()
    for name in ("ana", "ben", "chloe"):
        page = reader.get("/api/leads", params={"owner": name, "limit": 1000}).json()["leads"]
        mine = [lead for lead in page if lead["id"].startswith(f"rr-{tag}")]
        assert all(lead["owner"] == name and lead["team"] == "enterprise" for lead in mine)
        owners[name] = len(mine)
    assert sum(owners.values()) == 60
    assert max(owners.values()) - min(owners.values()) <= 1
    lead = reader.get(f"/api/leads/{users[0]}").json()
    assert lead["routing"]["kind"] == "assign"
    assert lead["routing"]["history"][0]["rule"] == "enterprise to AEs"
    assert 0 < lead["routing"]["sla"]["seconds_left"] <= 3 or lead["routing"]["sla"]["breached"]


def test_manual_assignment_rerouting_and_members_need_a_sales_key(routed: Service) -> None:
    with (
        routed.client("write") as writer,
        routed.client("sales") as sales,
        routed.client("read") as reader,
    ):
        _manual(writer, sales, reader)


def _manual(writer: httpx.Client, sales: httpx.Client, reader: httpx.Client) -> None:
    user = f"manual-{uuid.uuid4().hex[:6]}"
    assert writer.post("/v1/batch", json=mql_batch([user], 10)).status_code == 200
    assert reader.post(f"/api/leads/{user}/assign", json={"member": "zoe"}).status_code == 403
    done = sales.post(f"/api/leads/{user}/assign", json={"member": "zoe", "actor": "boss"})
    assert done.status_code == 200, done.text
    assert done.json()["member"] == "zoe" and done.json()["strategy"] == "manual"
    blank = sales.post(f"/api/leads/{user}/assign", json={"member": " "})
    assert blank.status_code == 400 and blank.json()["code"] == "invalid_request"
    again = sales.post(f"/api/leads/{user}/route")
    assert again.status_code == 200 and again.json()["team"] == "sdr"
    history = reader.get(f"/api/leads/{user}/explain").json()["routing"]["history"]
    assert [h["actor"] for h in history] == ["system", "boss", "sales:test sales"]
    away = sales.put("/api/members/dan", json={"available": False, "note": "holiday"})
    assert away.status_code == 200 and away.json()["available"] is False
    listed = {m["member"]: m for m in reader.get("/api/members").json()["members"]}
    assert listed["dan"]["note"] == "holiday" and listed["eve"]["available"] is True
    other = f"away-{uuid.uuid4().hex[:6]}"
    writer.post("/v1/batch", json=mql_batch([other, f"{other}-2"], 10))
    owners = {reader.get(f"/api/leads/{u}").json()["lead"]["owner"] for u in (other, f"{other}-2")}
    assert owners == {"eve"}  # dan is away
    assert sales.put("/api/members/dan", json={"available": True}).status_code == 200
    missing = sales.post("/api/leads/nobody-here/route")
    assert missing.status_code == 404


def test_the_scheduler_in_serve_breaches_the_sla_once_and_reroutes(routed: Service) -> None:
    user = f"sla-{uuid.uuid4().hex[:6]}"
    with routed.client("write") as writer:
        assert writer.post("/v1/batch", json=mql_batch([user])).status_code == 200
    with routed.client("read") as reader:
        _breach(reader, user)


def _breach(reader: httpx.Client, user: str) -> None:
    first = reader.get(f"/api/leads/{user}").json()["routing"]
    deadline = time.monotonic() + 20
    while True:  # accept_within is 3s; the scheduler runs every 0.3s
        routing = reader.get(f"/api/leads/{user}").json()["routing"]
        if len(routing["history"]) > 1 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    time.sleep(1.0)  # more rounds (in every worker) must not breach it again
    routing = reader.get(f"/api/leads/{user}").json()["routing"]
    reasons = [h["reason"] for h in routing["history"]]
    assert len(reasons) >= 2, reasons
    assert reasons[1].startswith(f"SLA breached by {first['owner']}: ")
    assert routing["history"][1]["member"] != first["owner"]
    # the new owner's SLA started at the breach; later breaches name the next owner
    owners = [h["member"] for h in routing["history"]]
    assert all(a != b for a, b in pairwise(owners))
