"""Ingested signals: Segment-spec messages decoded into `ActivityEvent`s (pure, no I/O).

The decoder is on the hot path (thousands of messages a second), so it works on the dicts a
JSON parser returns and validates by hand rather than through a schema library: measured,
this is several times faster than a pydantic model for the same checks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from qualify.errors import MessageError

__all__ = ["MESSAGE_TYPES", "ActivityEvent", "decode_message", "format_time", "parse_time"]

MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
_EMPTY: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class ActivityEvent:
    """One Segment message. `name` is what rules match: the casefolded track event name,
    or `page` / `screen` for views; identify, group and alias carry no rule name."""

    message_id: str
    type: str
    name: str
    timestamp: float  # seconds since the epoch, UTC
    user_id: str | None = None
    anonymous_id: str | None = None
    event: str = ""  # the event (or page) name as sent, for display
    properties: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    group_id: str | None = None
    previous_id: str | None = None
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """The id the message is about: the user id when known, else the anonymous id."""
        return self.user_id or self.anonymous_id or ""

    def to_segment(self) -> dict[str, Any]:
        """The message back in Segment's shape (how the store keeps it)."""
        message: dict[str, Any] = {
            "type": self.type,
            "messageId": self.message_id,
            "timestamp": format_time(self.timestamp),
        }
        if self.user_id is not None:
            message["userId"] = self.user_id
        if self.anonymous_id is not None:
            message["anonymousId"] = self.anonymous_id
        if self.type == "track":
            message["event"] = self.event
        elif self.type in ("page", "screen") and self.event:
            message["name"] = self.event
        if self.properties:
            message["properties"] = self.properties
        if self.traits:
            message["traits"] = self.traits
        if self.group_id is not None:
            message["groupId"] = self.group_id
        if self.previous_id is not None:
            message["previousId"] = self.previous_id
        if self.context:
            message["context"] = self.context
        return message


def parse_time(value: Any) -> float:
    """Seconds since the epoch from an ISO-8601 text (naive times are UTC) or a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value:
        raise MessageError(f"`timestamp` must be an ISO-8601 time, not {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise MessageError(
            f"`timestamp` {value!r} is not an ISO-8601 time (e.g. 2026-03-01T09:30:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_time(seconds: float) -> str:
    """ISO-8601 UTC with milliseconds, as Segment writes it."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _id(message: dict[str, Any], key: str) -> str | None:
    value = message.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise MessageError(f"`{key}` must be a text or a number, not {type(value).__name__}")


def _object(message: dict[str, Any], key: str) -> dict[str, Any]:
    value = message.get(key)
    if value is None:
        return _EMPTY
    if not isinstance(value, dict):
        raise MessageError(f"`{key}` must be a JSON object, not {type(value).__name__}")
    return value


def _derived_id(message: dict[str, Any]) -> str:
    """A stable id for a message that came without one, so re-ingesting a file is idempotent."""
    digest = hashlib.blake2b(orjson.dumps(message, option=orjson.OPT_SORT_KEYS), digest_size=16)
    return "derived-" + digest.hexdigest()


def decode_message(
    message: Any, *, default_type: str | None = None, received_at: float | None = None
) -> ActivityEvent:
    """Validate one decoded JSON message and build its `ActivityEvent`.

    Raises `MessageError` with the reason when the message is malformed. A message without
    `timestamp` takes `received_at` when given (as Segment's servers do), else it is an error.
    """
    if not isinstance(message, dict):
        raise MessageError(f"a message must be a JSON object, not {type(message).__name__}")
    kind = message.get("type", default_type)
    if kind not in MESSAGE_TYPES:
        if kind is None:
            raise MessageError("the message has no `type` (identify, track, page, screen, "
                               "group or alias)")
        raise MessageError(f"unknown message type {kind!r}: use identify, track, page, screen, "
                           "group or alias")
    user_id = _id(message, "userId")
    anonymous_id = _id(message, "anonymousId")
    previous_id = _id(message, "previousId") if kind == "alias" else None
    if kind == "alias":
        if previous_id is None or user_id is None:
            raise MessageError("an alias message needs both `previousId` and `userId`")
    elif user_id is None and anonymous_id is None:
        raise MessageError("the message has neither `userId` nor `anonymousId`")
    raw_time = message.get("timestamp") or message.get("originalTimestamp")
    if raw_time is None:
        if received_at is None:
            raise MessageError("the message has no `timestamp`")
        timestamp = received_at
    else:
        timestamp = parse_time(raw_time)
    properties = _object(message, "properties")
    traits = _object(message, "traits")
    context = _object(message, "context")
    event = ""
    name = ""
    group_id = None
    if kind == "track":
        event = message.get("event")
        if not isinstance(event, str) or not event.strip():
            raise MessageError("a track message needs an `event` name")
        name = event.strip().casefold()
    elif kind in ("page", "screen"):
        raw_name = message.get("name")
        event = raw_name if isinstance(raw_name, str) else ""
        name = kind
        if event and "name" not in properties:
            properties = {**properties, "name": event}
    elif kind == "group":
        group_id = _id(message, "groupId")
        if group_id is None:
            raise MessageError("a group message needs a `groupId`")
    elif kind == "identify" and not traits and context.get("traits"):
        traits = _object(context, "traits")
    message_id = _id(message, "messageId") or _derived_id(message)
    return ActivityEvent(
        message_id=message_id,
        type=kind,
        name=name,
        timestamp=timestamp,
        user_id=user_id,
        anonymous_id=anonymous_id,
        event=event,
        properties=properties,
        traits=traits,
        group_id=group_id,
        previous_id=previous_id,
        context=context,
    )
