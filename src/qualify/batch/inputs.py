"""The two relations a plan reads, built from Segment messages with the live engine's code.

Identity resolution and profiles depend on the order in which messages arrive (the first
user an anonymous id meets claims it; the latest trait wins), and they are what the live
engine's `LeadBook` already does exactly. So messages pass through a `LeadBook` without
engagement rules — identity, traits, accounts, first touch — while the messages rules can
match are set aside as rows; at the end each row gets the lead its ids resolve to. The plan
then does the heavy part, the rules over those rows, where the data is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import orjson
import pyarrow as pa

from qualify.core.activity import ActivityEvent
from qualify.core.leadbook import LeadBook
from qualify.core.scoring import CompiledModel
from qualify.model.scoring_model import ScoringModel

__all__ = ["BatchInputs", "from_messages"]

EVENT_SCHEMA = pa.schema(
    [
        ("lead_id", pa.string()),
        ("message_id", pa.string()),
        ("name", pa.string()),
        ("ts", pa.float64()),
        ("properties", pa.string()),
    ]
)
PROFILE_SCHEMA = pa.schema([("lead_id", pa.string()), ("profile", pa.string())])


@dataclasses.dataclass(frozen=True)
class BatchInputs:
    events: pa.Table
    profiles: pa.Table


def from_messages(
    model: ScoringModel, messages: Iterable[ActivityEvent], as_of: float
) -> BatchInputs:
    """Events and profiles (as of `as_of`) for every lead the messages name."""
    book = LeadBook(CompiledModel(dataclasses.replace(model, engagement=())), dedupe=True)
    seen = book.seen
    assert seen is not None
    named = set().union(*(rule.events for rule in model.engagement))
    users, anonymous = book.graph.users, book.graph.anonymous
    # column by column, so the messages themselves (their dicts) are freed as we go
    message_ids: list[str] = []
    names: list[str] = []
    times: list[float] = []
    properties: list[str] = []
    ids: list[tuple[str | None, str | None]] = []
    for event in messages:
        if event.message_id in seen:
            continue
        user, anon = event.user_id, event.anonymous_id
        if (
            event.name
            and (user is None or anon is None)
            and (user or anon) in (users if anon is None else anonymous)
        ):
            # One id, already known: the message changes no identity and no profile (only
            # first/last seen, which scores do not read), so the book need not see it.
            seen.add(event.message_id)
        else:
            book.apply(event)
        if event.name in named:
            message_ids.append(event.message_id)
            names.append(event.name)
            times.append(event.timestamp)
            properties.append(orjson.dumps(event.properties).decode())
            ids.append((user, anon))
    leads = [users[u] if u is not None else anonymous[a] for u, a in ids]  # type: ignore[index]
    events = pa.table([leads, message_ids, names, times, properties], schema=EVENT_SCHEMA)
    profiles = pa.table(
        [
            list(book.leads),
            [orjson.dumps(book.profile(r, as_of)).decode() for r in book.leads.values()],
        ],
        schema=PROFILE_SCHEMA,
    )
    return BatchInputs(events, profiles)
