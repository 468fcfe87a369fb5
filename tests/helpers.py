"""Small builders shared by the tests: models from YAML text, messages, times."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
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
