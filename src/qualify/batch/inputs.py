"""The two relations a plan reads, built from Segment messages with the live engine's code.

Identity resolution and profiles depend on the order in which messages arrive (the first
user an anonymous id meets claims it; the latest trait wins), and they are what the live
engine's `LeadBook` already does exactly. So messages pass through a `LeadBook` without
engagement rules — identity, traits, accounts, first touch — while the messages rules can
match are set aside as rows; at the end each row gets the lead its ids resolve to. The plan
then does the heavy part, the rules over those rows, where the data is.

From a store (`from_store`), identity is already resolved: each stored event names its lead,
and each lead row holds its traits with their stamps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from qualify.core.activity import ActivityEvent
from qualify.core.leadbook import Account, LeadBook, Traits
from qualify.core.scoring import CompiledModel
from qualify.model.scoring_model import ScoringModel

if TYPE_CHECKING:
    from sqlalchemy import Connection

__all__ = ["BatchInputs", "from_messages", "from_store", "store_events", "store_profiles"]

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

    def only(self, lead_ids: Collection[str]) -> BatchInputs:
        """The rows of these leads only."""
        import pyarrow.compute as pc

        wanted = pa.array(sorted(lead_ids), type=pa.string())
        return BatchInputs(
            self.events.filter(pc.is_in(self.events.column("lead_id"), wanted)),
            self.profiles.filter(pc.is_in(self.profiles.column("lead_id"), wanted)),
        )


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


def from_store(model: ScoringModel, conn: Connection, as_of: float) -> BatchInputs:
    """Events and profiles (as of `as_of`) from the store's tables: every event already
    carries its lead (merges repoint them), and each lead row its traits with their stamps."""
    return BatchInputs(store_events(model, conn), store_profiles(model, conn, as_of))


def store_events(
    model: ScoringModel, conn: Connection, lead_ids: Collection[str] | None = None
) -> pa.Table:
    """The stored events rules can match (of some leads only, when given), as rows."""
    from sqlalchemy import select

    from qualify.store import repository as repo
    from qualify.store.tables import events

    named = set().union(*(rule.events for rule in model.engagement))
    columns: list[list[Any]] = [[], [], [], [], []]
    leads_of, message_ids, names, times, properties = columns
    # The stored `name` is the event as sent (any case): rules match the casefolded name.
    query = select(events.c.lead_id, repo.payload_text(conn), events.c.ts).where(
        events.c.type.in_(("track", "page", "screen"))
    )
    parts = [None] if lead_ids is None else list(repo.chunks(list(lead_ids)))
    for part in parts:
        chosen = query if part is None else query.where(events.c.lead_id.in_(part))
        for lead_id, payload, ts in conn.execution_options(yield_per=10_000).execute(chosen):
            event = repo.stored_event(payload, ts)  # as the live engine reads it back
            if event.name not in named:
                continue
            leads_of.append(lead_id)
            message_ids.append(event.message_id)
            names.append(event.name)
            times.append(event.timestamp)
            properties.append(orjson.dumps(event.properties).decode())
    return pa.table(columns, schema=EVENT_SCHEMA)


def store_profiles(model: ScoringModel, conn: Connection, as_of: float) -> pa.Table:
    """Every stored lead's profile as of `as_of`, from its traits and their stamps."""
    from sqlalchemy import select

    from qualify.store import repository as repo
    from qualify.store.tables import accounts, leads

    book = LeadBook(CompiledModel(dataclasses.replace(model, engagement=())))
    for row in conn.execute(select(accounts)):
        m = row._mapping
        book.accounts[m["id"]] = Account(m["id"], Traits.from_json(m["traits"], m["trait_stamps"]))
    profile_ids: list[str] = []
    profiles: list[str] = []
    for row in conn.execution_options(yield_per=10_000).execute(select(leads)):
        record = repo.lead_from_row(row, 0, lenient=True).record  # traits; no rule state
        profile_ids.append(record.lead_id)
        profiles.append(orjson.dumps(book.profile(record, as_of)).decode())
    return pa.table([profile_ids, profiles], schema=PROFILE_SCHEMA)
