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
