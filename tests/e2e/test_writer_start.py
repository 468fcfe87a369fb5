"""The service's first requests, arriving together, start one writer between them.

The server runs in this process (uvicorn in a thread, on a loopback port) so that the test
can count the writer threads it started."""

from __future__ import annotations

import gc
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn

from qualify.api.app import create_app
from qualify.api.settings import ServiceSettings
from serving import free_port, prepare_store


def writers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "qualify-writer"]


def test_requests_arriving_together_start_one_writer(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    key = prepare_store(db)["write"]
    port = free_port()
    app = create_app(ServiceSettings(database_url=db, schedule_every=0))
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    before, thresholds = len(writers()), gc.get_threshold()
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        start = threading.Barrier(8)

        def send(i: int) -> int:
            body = {
                "type": "track",
                "userId": f"lead-{i}",
                "event": "Webinar Attended",
                "messageId": uuid.uuid4().hex,
            }
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=(key, "")) as http:
                start.wait()
                return http.post("/v1/track", json=body, timeout=30).status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(send, range(8))) == [200] * 8
        assert len(writers()) - before == 1
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        gc.unfreeze()  # the app tunes the collector for its process: this one is the tests'
        gc.set_threshold(*thresholds)
