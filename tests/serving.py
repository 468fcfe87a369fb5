"""Running a real `qualify serve` on a loopback port, over a fresh SQLite file or a fresh
PostgreSQL database, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from qualify.model import load_model
from qualify.service.rescore import activate_model
from qualify.store import open_engine
from qualify.store.database import database_url, writing
from qualify.store.keys import create_key

FIXTURES = Path(__file__).parent / "fixtures"
POSTGRES_URL = os.environ.get("QUALIFY_TEST_POSTGRES_URL")


@dataclass
class Service:
    base: str
    db: str
    keys: dict[str, str]  # role → secret
    process: subprocess.Popen
    log: Any  # the server's output (a temporary file)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def client(self, role: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_database(kind: str, tmp: Path, server: str | None = None) -> Iterator[str]:
    """A new store's URL (a SQLite file, or a database created on the PostgreSQL server,
    dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'service.db'}"
        return
    server = server or POSTGRES_URL
    if not server:
        pytest.skip("QUALIFY_TEST_POSTGRES_URL is not set: PostgreSQL tests skipped")
    admin = create_engine(database_url(server), isolation_level="AUTOCOMMIT")
    name = f"qualify_e2e_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield database_url(server).rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def prepare_store(db: str, model: str = "worked_example.yaml") -> dict[str, str]:
    """The store a test server starts on: the model active, and a key of each role (role →
    secret)."""
    engine = open_engine(db)
    activate_model(engine, load_model((FIXTURES / model).read_text(), model), clock=time.time)
    keys = {}
    with writing(engine) as conn:
        for role in ("write", "read", "sales", "marketing", "admin"):
            keys[role] = create_key(conn, role, f"test {role}", time.time())[1]
    engine.dispose()
    return keys


def start_service(db: str, *args: str, model: str = "worked_example.yaml") -> Service:
    keys = prepare_store(db, model)
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop_service; not a pipe, which a chatty server could fill
    process = subprocess.Popen(
        [sys.executable, "-m", "qualify", "serve", "--db", db, "--port", str(port), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            log.seek(0)
            output = log.read().decode(errors="replace")
            log.close()
            raise RuntimeError(f"the server did not start:\n{output}")
        time.sleep(0.1)
    return Service(base, db, keys, process, log)


def stop_service(service: Service) -> None:
    service.process.terminate()
    try:
        service.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait()
    service.log.close()
