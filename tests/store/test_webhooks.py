"""Webhooks against a real store and a real loopback receiver: what the outbox holds after
each kind of change, dead letters and replay, backoff, signatures."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from helpers import at, identify, track
from qualify.errors import QualifyError
from qualify.model import load_model
from qualify.service.feedback import record_action
from qualify.service.ingest import Ingestor
from qualify.service.rescore import activate_model
from qualify.service.routing import check_sla
from qualify.service.webhooks import (
    DeliveryPolicy,
    add_subscription,
    deliver_due,
    list_subscriptions,
    remove_subscription,
    replay,
    sign,
    verify_signature,
)
from qualify.store.tables import webhook_outbox

MODEL = """
name: hooked
version: "1"
fit:
  - {name: enterprise, when: {company_size: {gte: 1000}}, points: 50}
engagement:
  - {name: demo, event: Demo Requested, points: 60}
  - {name: visit, event: page, points: 1}
qualification:
  mql: {score_at_least: 100}
lifecycle:
  sla: {accept_within: 1h}
routing:
  - name: AEs
    assign: {team: ae, strategy: round_robin, members: [ana, ben]}
"""


class Receiver:
    """A loopback HTTP receiver whose answer the test sets."""

    def __init__(self) -> None:
        self.status = 200
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.append(orjson.loads(body))
                receiver.headers.append({**self.headers, "_raw": body})
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def outbox(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(webhook_outbox).order_by(webhook_outbox.c.id)).all()
    return [dict(r._mapping) for r in rows]


def mql(user: str, days: float) -> list:
    return [identify(user, days, company_size=5000), track("Demo Requested", days + 0.01, user)]


def test_changes_queue_their_events_in_order_in_the_same_transaction(engine: Engine) -> None:
    activate_model(engine, load_model(MODEL), clock=lambda: at(-1))
    sub = add_subscription(
        engine,
        "http://127.0.0.1:9/hook",
        ["lead.mql", "lead.routed", "lead.stage_changed", "lead.sla_breached"],
        created_by="test",
    )
    score_only = add_subscription(
        engine,
        "http://127.0.0.1:9/other",
        ["lead.score_changed"],
        created_by="t",
        min_score_change=10,
    )
    Ingestor(engine, clock=lambda: at(1)).ingest(mql("u1", 0.5))
    record_action(engine, "u1", "accept", actor="ana", clock=lambda: at(1.01))
    Ingestor(engine, clock=lambda: at(2)).ingest(mql("u2", 1.5))
    check_sla(engine, clock=lambda: at(3))
    rows = outbox(engine)
    mine = [(r["lead_id"], r["event_type"]) for r in rows if r["subscription_id"] == sub["id"]]
    assert mine == [
        ("u1", "lead.stage_changed"),
        ("u1", "lead.mql"),
        ("u1", "lead.routed"),
        ("u1", "lead.stage_changed"),
        ("u2", "lead.stage_changed"),
        ("u2", "lead.mql"),
        ("u2", "lead.routed"),
        ("u2", "lead.sla_breached"),
    ]
    ours = [r for r in rows if r["subscription_id"] == sub["id"]]
    assert ours[2]["payload"]["data"]["member"] == "ana"
    assert ours[3]["payload"]["data"]["to_stage"] == "sql"
    scores = [r for r in rows if r["subscription_id"] == score_only["id"]]
    # each lead goes from 0 to 110 in its transaction (scored once per transaction)
    assert [r["payload"]["data"]["to"] for r in scores] == [110.0, 110.0]
    Ingestor(engine, clock=lambda: at(4)).ingest(
        [track("Page Viewed", 3.9, "u1")]  # an unrelated event: no rule, no score change
    )
    assert len(outbox(engine)) == len(rows)


def test_failing_deliveries_back_off_die_and_are_replayed(
    engine: Engine, receiver: Receiver
) -> None:
    activate_model(engine, load_model(MODEL), clock=lambda: at(-1))
    sub = add_subscription(engine, receiver.url, ["lead.mql"], created_by="test")
    Ingestor(engine, clock=lambda: at(1)).ingest(mql("u1", 0.5) + mql("u2", 0.6))
    policy = DeliveryPolicy(base_delay=10, max_attempts=3)
    clock = [at(1)]
    rng = random.Random(7)
    receiver.status = 503
    with httpx.Client(timeout=5) as client:
        assert deliver_due(engine, client, policy=policy, clock=lambda: clock[0], rng=rng) == 2
        rows = outbox(engine)
        assert [r["attempts"] for r in rows] == [1, 1]
        assert all(at(1) + 5 <= r["next_attempt_at"] <= at(1) + 10 for r in rows)
        assert deliver_due(engine, client, policy=policy, clock=lambda: clock[0], rng=rng) == 0
        for _ in range(2):
            clock[0] += 3600
            deliver_due(engine, client, policy=policy, clock=lambda: clock[0], rng=rng)
        assert [r["state"] for r in outbox(engine)] == ["dead", "dead"]
        assert outbox(engine)[0]["last_status"] == 503
        (listed,) = list_subscriptions(engine)
        assert listed["deliveries"] == {"pending": 0, "delivered": 0, "dead": 2, "cancelled": 0}
        assert "secret" not in listed
        receiver.status = 200
        assert replay(engine, subscription=sub["id"], clock=lambda: clock[0]) == 2
        assert deliver_due(engine, client, policy=policy, clock=lambda: clock[0], rng=rng) == 2
    assert [r["state"] for r in outbox(engine)] == ["delivered", "delivered"]
    assert len(receiver.bodies) == 3 * 2 + 2
    last = receiver.headers[-1]
    assert last["Qualify-Event"] == "lead.mql"
    assert verify_signature(sub["secret"], last["_raw"], last["Qualify-Signature"], now=clock[0])
    assert receiver.bodies[-1]["id"] == int(last["Qualify-Delivery"])
    remove_subscription(engine, sub["id"])
    with pytest.raises(QualifyError, match="no active webhook subscription"):
        remove_subscription(engine, sub["id"])
    Ingestor(engine, clock=lambda: at(5)).ingest(mql("u3", 4.5))
    assert len(outbox(engine)) == 2  # nothing is queued for a stopped subscription
    with pytest.raises(QualifyError, match="no active webhook subscription"):
        replay(engine, subscription=sub["id"])


def test_a_removed_subscription_cancels_its_backlog_and_blocks_no_one(
    engine: Engine, receiver: Receiver
) -> None:
    activate_model(engine, load_model(MODEL), clock=lambda: at(-1))
    gone = add_subscription(engine, "http://127.0.0.1:9/nowhere", ["lead.mql"], created_by="t")
    Ingestor(engine, clock=lambda: at(1)).ingest([m for n in range(5) for m in mql(f"u{n}", 0.5)])
    remove_subscription(engine, gone["id"])
    kept = add_subscription(engine, receiver.url, ["lead.mql"], created_by="t")
    Ingestor(engine, clock=lambda: at(2)).ingest(mql("late", 1.5))
    policy = DeliveryPolicy(batch=2)
    with httpx.Client(timeout=5) as client:
        assert deliver_due(engine, client, policy=policy, clock=lambda: at(2)) == 1
    states = {(r["subscription_id"], r["state"]) for r in outbox(engine)}
    assert states == {(gone["id"], "cancelled"), (kept["id"], "delivered")}


def test_a_stale_worker_cannot_overwrite_a_row_another_lease_holds(
    engine: Engine, receiver: Receiver
) -> None:
    """A worker whose lease ran out records nothing: the row's new holder decides."""
    from qualify.service import webhooks

    activate_model(engine, load_model(MODEL), clock=lambda: at(-1))
    add_subscription(engine, receiver.url, ["lead.mql"], created_by="t")
    Ingestor(engine, clock=lambda: at(1)).ingest(mql("u1", 0.5))
    policy = DeliveryPolicy(lease=30, timeout=5)
    (stale,) = webhooks._claim(engine, policy, at(1))
    (fresh,) = webhooks._claim(engine, policy, at(1) + 31)  # the first lease ran out
    assert fresh["token"] != stale["token"]
    failed = webhooks._Outcome(stale["id"], False, 500, "boom")
    webhooks._record(engine, stale, failed, policy, at(1) + 32, random.Random(1))
    assert outbox(engine)[0]["attempts"] == 0  # the stale outcome was not written
    with httpx.Client(timeout=5) as client:
        done = webhooks._send(client, fresh, at(1) + 32)
    webhooks._record(engine, fresh, done, policy, at(1) + 32, random.Random(1))
    assert outbox(engine)[0]["state"] == "delivered"
    assert webhooks._claim(engine, policy, at(1) + 100) == []


def test_no_send_starts_unless_the_lease_outlasts_it(engine: Engine, receiver: Receiver) -> None:
    activate_model(engine, load_model(MODEL), clock=lambda: at(-1))
    add_subscription(engine, receiver.url, ["lead.mql"], created_by="t")
    Ingestor(engine, clock=lambda: at(1)).ingest([m for n in range(3) for m in mql(f"u{n}", 0.5)])
    ticks = iter([at(1), at(1), at(1) + 1, at(1) + 1, at(1) + 1, at(1) + 58] + [at(1) + 58] * 9)
    policy = DeliveryPolicy(lease=60, timeout=5)
    with httpx.Client(timeout=5) as client:
        sent = deliver_due(engine, client, policy=policy, clock=lambda: next(ticks))
    assert sent == 1  # the second send would have begun 58 s into a 60 s lease
    assert [r["state"] for r in outbox(engine)] == ["delivered", "pending", "pending"]
    assert [r["lease_token"] for r in outbox(engine)][1:] == [None, None]  # released


def test_subscriptions_refuse_unknown_events_and_urls(engine: Engine) -> None:
    with pytest.raises(QualifyError, match=r"did you mean `lead\.routed`"):
        add_subscription(engine, "http://x.example/h", ["lead.route"], created_by="t")
    with pytest.raises(QualifyError, match="is not an http"):
        add_subscription(engine, "ftp://x.example/h", ["lead.mql"], created_by="t")


def test_signatures_fail_for_another_secret_body_or_an_old_timestamp() -> None:
    body = b'{"id": 1}'
    header = sign("whsec_a", body, 1_800_000_000)
    assert verify_signature("whsec_a", body, header, now=1_800_000_100)
    assert not verify_signature("whsec_b", body, header, now=1_800_000_100)
    assert not verify_signature("whsec_a", body + b" ", header, now=1_800_000_100)
    assert not verify_signature("whsec_a", body, header, now=1_800_000_400)
    assert not verify_signature("whsec_a", body, "garbage", now=1_800_000_100)


@given(attempts=st.integers(1, 40), seed=st.integers(0, 1000))
def test_backoff_doubles_with_jitter_up_to_the_cap(attempts: int, seed: int) -> None:
    policy = DeliveryPolicy(base_delay=2, max_delay=600)
    full = min(600, 2 * 2 ** (attempts - 1))
    assert full / 2 <= policy.delay(attempts, random.Random(seed)) <= full
