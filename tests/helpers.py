"""Small builders shared by the tests: models from YAML text, messages, times."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qualify.core.activity import ActivityEvent, decode_message
from qualify.core.scoring import CompiledModel
from qualify.model import load_model

_ids = itertools.count(1)
DAY = 86400.0
T0 = datetime(2026, 3, 1, tzinfo=UTC).timestamp()


def model(text: str) -> CompiledModel:
    return CompiledModel(load_model(text, "test.yaml"))


def at(days: float) -> float:
    """T0 plus some days."""
    return T0 + days * DAY


def track(event: str, days: float, user: str = "u1", **properties: Any) -> ActivityEvent:
    return decode_message(
        {
            "type": "track",
            "userId": user,
            "event": event,
            "properties": properties,
            "timestamp": at(days),
            "messageId": f"m{next(_ids):06d}",
        }
    )


def page(path: str, days: float, user: str = "u1", **properties: Any) -> ActivityEvent:
    return decode_message(
        {
            "type": "page",
            "userId": user,
            "name": path.strip("/") or "home",
            "properties": {"path": path, **properties},
            "timestamp": at(days),
            "messageId": f"m{next(_ids):06d}",
        }
    )


def identify(
    user: str | None, days: float, anonymous: str | None = None, **traits: Any
) -> ActivityEvent:
    message: dict[str, Any] = {
        "type": "identify",
        "traits": traits,
        "timestamp": at(days),
        "messageId": f"m{next(_ids):06d}",
    }
    if user:
        message["userId"] = user
    if anonymous:
        message["anonymousId"] = anonymous
    return decode_message(message)


def message(**fields: Any) -> ActivityEvent:
    fields.setdefault("messageId", f"m{next(_ids):06d}")
    return decode_message(fields)


def assert_batch_equals_live(model: Any, live: dict[str, Any], batch: dict[str, Any]) -> None:
    """Batch rows (`qualify.batch.plan`) against live `LeadScore`s, lead by lead: flags, tier
    and grade exactly; points exactly without decay, within 1e-9 with it."""
    assert set(batch) == set(live)
    for lead, score in live.items():
        row = batch[lead]
        assert (row["mql"], row["pql"], row["tier"], row["grade"]) == (
            score.mql,
            score.pql,
            score.tier,
            score.grade,
        ), lead
        for name in ("fit", "engagement", "score"):
            assert abs(row[name] - getattr(score, name)) <= 1e-9, (lead, name)
        points = score.rule_points()
        for rule in model.rule_names:
            got, want = row["rule:" + rule], points.get(rule)
            assert (got is None) == (want is None), (lead, rule, got, want)
            if want is not None:
                assert abs(got - want) <= 1e-9, (lead, rule)
                if model.half_life is None:
                    assert got == want, (lead, rule)  # exact without decay


# The `qualify` command as a user runs it (tests/cli): a real process in a scratch directory.


def qualify(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "qualify", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(cwd)},
    )
    assert "Traceback" not in done.stderr, done.stderr
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def jsonl(path: Path, messages: list) -> Path:
    path.write_text("".join((m if isinstance(m, str) else json.dumps(m)) + "\n" for m in messages))
    return path


def seed(user: str = "ana", second: str = "2026-03-09") -> list:
    return [
        {
            "type": "identify",
            "userId": user,
            "timestamp": "2026-03-01T09:00:00Z",
            "traits": {"industry": "Financial Services", "company_size": "800"},
        },
        {
            "type": "track",
            "userId": user,
            "event": "Content Downloaded",
            "timestamp": "2026-03-01T10:00:00Z",
            "properties": {"content_type": "whitepaper", "topic": "compliance"},
        },
        {
            "type": "track",
            "userId": user,
            "event": "Webinar Attended",
            "timestamp": "2026-03-02T10:00:00Z",
        },
        {
            "type": "page",
            "userId": user,
            "name": "Pricing",
            "properties": {"path": "/pricing"},
            "timestamp": "2026-03-03T10:00:00Z",
        },
        {
            "type": "page",
            "userId": user,
            "name": "Pricing",
            "properties": {"path": "/pricing"},
            "timestamp": f"{second}T10:00:00Z",
        },
    ]


# Hypothesis examples per batch engine (tests/batch): a Spark query costs about a second.
EXAMPLES = {"duckdb": 1.0, "postgres": 0.5, "spark": 0.15}


def examples(backend: Any, count: int) -> int:
    """How many Hypothesis examples a test draws on this engine."""
    return max(5, int(count * EXAMPLES[backend.name]))
