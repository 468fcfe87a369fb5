"""Outbound webhooks end to end: a real receiver on loopback that is down for a while and
fails some requests; afterwards every event was delivered, none twice to a receiver that
answered 2xx, each lead's events in order, every signature valid (SQLite, and PostgreSQL
with three workers)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson
import pytest

from qualify.service.webhooks import verify_signature
from serving import Service, free_port, fresh_database, start_service, stop_service

EVENTS = ["lead.mql", "lead.routed", "lead.stage_changed", "lead.score_changed"]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def hooked(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    workers = "1" if request.param == "sqlite" else "3"
    for db in fresh_database(request.param, tmp_path_factory.mktemp("hooks")):
        running = start_service(
            db,
            "--workers",
            workers,
            "--schedule-every",
            "0.3",
            "--webhook-base-delay",
            "0.05",
            "--webhook-max-attempts",
            "100",
            model="webhooks.yaml",
        )
        try:
            yield running
        finally:
            stop_service(running)


class Receiver:
    """Answers 500 to every third request; records what it answered 2xx to."""

    def __init__(self, port: int, secret: str) -> None:
        self.accepted: list[dict] = []
        self.requests = 0
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests += 1
                    fail = receiver.requests % 3 == 0
                    if not verify_signature(secret, body, self.headers["Qualify-Signature"]):
                        receiver.bad_signatures += 1
                    if not fail:
                        receiver.accepted.append(orjson.loads(body))
                self.send_response(500 if fail else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def mql_batch(users: list[str]) -> dict:
    batch = []
    for user in users:
        batch.append({"type": "identify", "userId": user, "traits": {"company_size": 5000}})
        batch.append({"type": "track", "userId": user, "event": "Demo Requested"})
    for n, message in enumerate(batch):
        message["messageId"] = f"{message['userId']}-{n}"
    return {"batch": batch}


def deliveries(admin: httpx.Client) -> dict[str, int]:
    (hook,) = admin.get("/api/webhooks").json()["webhooks"]
    return hook["deliveries"]


def test_every_event_arrives_once_in_order_per_lead_with_valid_signatures(
    hooked: Service,
) -> None:
    port = free_port()
    with (
        hooked.client("admin") as admin,
        hooked.client("write") as writer,
        hooked.client("sales") as sales,
    ):
        denied = sales.post("/api/webhooks", json={"url": "http://x", "events": ["lead.mql"]})
        assert denied.status_code == 403
        assert admin.delete("/api/webhooks/999").status_code == 404
        assert admin.post("/api/webhooks/999/replay").json()["code"] == "webhook_not_found"
        malformed = admin.post("/api/webhooks", json={"url": "http://[::1/x", "events": EVENTS})
        assert malformed.status_code == 400 and "not an http(s) URL" in malformed.json()["message"]
        wrong = admin.post("/api/webhooks", json={"url": "http://x", "events": ["lead.mq"]})
        assert wrong.status_code == 400 and "did you mean `lead.mql`" in wrong.json()["message"]
        created = admin.post(
            "/api/webhooks",
            json={"url": f"http://127.0.0.1:{port}/hook", "events": EVENTS, "min_score_change": 1},
        )
        assert created.status_code == 200, created.text
        secret = created.json()["secret"]
        users = [f"hook-{n:02d}" for n in range(24)]
        for part in range(0, 24, 6):  # the receiver is down: every attempt fails for now
            assert (
                writer.post("/v1/batch", json=mql_batch(users[part : part + 6])).status_code == 200
            )
        for user in users[:8]:
            assert sales.post(f"/api/leads/{user}/accept").status_code == 200
        time.sleep(1.5)
        assert deliveries(admin)["delivered"] == 0
        with Receiver(port, secret) as receiver:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                state = deliveries(admin)
                if state["pending"] == 0:
                    break
                time.sleep(0.3)
            time.sleep(0.5)  # a late duplicate would arrive now
        assert state == {"pending": 0, "delivered": state["delivered"], "dead": 0, "cancelled": 0}
    accepted = receiver.accepted
    assert receiver.bad_signatures == 0
    ids = [a["id"] for a in accepted]
    assert len(ids) == len(set(ids)) == state["delivered"]  # none twice after a 2xx
    by_lead: dict[str, list[dict]] = defaultdict(list)
    for item in accepted:
        by_lead[item["lead"]["id"]].append(item)
    assert set(by_lead) == set(users)
    for user, items in by_lead.items():
        assert [i["id"] for i in items] == sorted(i["id"] for i in items), user  # in order
        kinds = [i["type"] for i in items]
        start = kinds.index("lead.stage_changed")
        assert kinds[start : start + 3] == ["lead.stage_changed", "lead.mql", "lead.routed"]
        assert "lead.score_changed" in kinds[:start]
        routed = items[start + 2]
        assert routed["data"]["member"] in {"ana", "ben", "chloe"}
        if user in users[:8]:  # accepted by sales: the last word is the stage change to sql
            assert items[-1]["type"] == "lead.stage_changed"
            assert items[-1]["data"]["to_stage"] == "sql"
