"""Reading and writing leads, accounts, identities, events, ledger and transitions.

Rows become the core's objects (`LeadRecord`, `Account`, `LeadState`) and back; the
lifecycle and scoring columns of a lead travel in a `LeadStatus`. Bulk writes use
executemany so a batch of thousands of messages costs a handful of statements.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import orjson
from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Engine,
    Table,
    Text,
    bindparam,
    cast,
    delete,
    insert,
    select,
    type_coerce,
    update,
)

from qualify.core.activity import ActivityEvent, decode_line, decode_message
from qualify.core.leadbook import Account, LeadRecord, Traits
from qualify.core.lifecycle import Stage, StageChanged
from qualify.core.scoring import CompiledModel
from qualify.core.state import LeadState
from qualify.errors import LeadNotFound
from qualify.store.database import GENERATION
from qualify.store.tables import (
    accounts,
    events,
    identities,
    leads,
    ledger,
    routings,
    sla_breaches,
    transitions,
    webhook_outbox,
)

__all__ = ["LeadStatus", "StoredLead", "chunks"]

_IN_LIMIT = 500  # ids per IN (...) list: well under every backend's parameter limit


def chunks(items: Sequence[Any], size: int = _IN_LIMIT) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(slots=True)
class LeadStatus:
    """A lead's lifecycle and score columns."""

    stage: Stage = Stage.LEAD
    stage_at: float = 0.0
    recycled_at: float | None = None
    qualified_at: float | None = None
    fit: float = 0.0
    engagement: float = 0.0
    score: float = 0.0
    mql: bool = False
    pql: bool = False
    tier: str | None = None
    grade: str | None = None
    rule_points: dict[str, float] = field(default_factory=dict)
    model_version_id: int | None = None  # the version of the scores
    state_version_id: int | None = None  # the version the rule state was built for
    scored_at: float | None = None
    created_at: float = 0.0
    routing: str | None = None  # how it was last routed: nurture, assign, unrouted
    owner: str | None = None
    team: str | None = None
    nurture_campaign: str | None = None
    routed_at: float | None = None
    sla_due_at: float | None = None
    sla_breached_at: float | None = None


@dataclass(slots=True)
class StoredLead:
    record: LeadRecord
    status: LeadStatus


def stamp_of(value: Any) -> tuple[float, str] | None:
    """A stored stamp (`[time, messageId]`, or null) as the core holds it."""
    return (value[0], value[1]) if value else None


def lead_from_row(row: Any, rule_count: int, *, lenient: bool = False) -> StoredLead:
    """A lead from its row; `lenient` gives an empty state when the stored one was saved for
    a model with other rules (the caller rebuilds it), as does a row read without it."""
    m = row._mapping
    state = _state(m["state"], rule_count, lenient) if "state" in m else LeadState(rule_count)
    traits = Traits.from_json(m["traits"], m["trait_stamps"])
    record = LeadRecord(
        lead_id=m["id"],
        state=state,
        traits=traits,
        account_id=m["account_id"],
        account_stamp=stamp_of(m["account_stamp"]),
        first_seen=m["first_seen"],
        last_seen=m["last_seen"],
        source=m["source"],
        campaign=m["campaign"],
        source_stamp=stamp_of(m["source_stamp"]),
    )
    status = LeadStatus(
        stage=Stage(m["stage"]),
        stage_at=m["stage_at"],
        recycled_at=m["recycled_at"],
        qualified_at=m["qualified_at"],
        fit=m["fit"],
        engagement=m["engagement"],
        score=m["score"],
        mql=bool(m["mql"]),
        pql=bool(m["pql"]),
        tier=m["tier"],
        grade=m["grade"],
        rule_points=dict(m["rule_points"]),
        model_version_id=m["model_version_id"],
        state_version_id=m["state_version_id"],
        scored_at=m["scored_at"],
        created_at=m["created_at"],
        **{name: m[name] for name in ROUTING_COLUMNS},
    )
    return StoredLead(record, status)


def lead_values(stored: StoredLead) -> dict[str, Any]:
    """Every column of a lead's row."""
    return {
        "id": stored.record.lead_id,
        **_score_values(stored),
        **_profile_values(stored),
        **_lifecycle_values(stored),
    }


def _score_values(stored: StoredLead) -> dict[str, Any]:
    """The columns most messages change: the score and the rule state behind it."""
    r, s = stored.record, stored.status
    return {
        "first_seen": r.first_seen,
        "last_seen": r.last_seen,
        "fit": s.fit,
        "engagement": s.engagement,
        "score": s.score,
        "mql": s.mql,
        "pql": s.pql,
        "grade": s.grade,
        "rule_points": s.rule_points,
        "state": r.state.to_json(),
        "model_version_id": s.model_version_id,
        "state_version_id": s.state_version_id,
        "scored_at": s.scored_at,
    }


def _profile_values(stored: StoredLead) -> dict[str, Any]:
    r = stored.record
    return {
        "account_id": r.account_id,
        "account_stamp": list(r.account_stamp) if r.account_stamp else None,
        "traits": r.traits.values,
        "trait_stamps": r.traits.to_json(),
        "source": r.source,
        "campaign": r.campaign,
        "source_stamp": list(r.source_stamp) if r.source_stamp else None,
    }


def _lifecycle_values(stored: StoredLead) -> dict[str, Any]:
    s = stored.status
    return {
        "stage": str(s.stage),
        "stage_at": s.stage_at,
        "recycled_at": s.recycled_at,
        "qualified_at": s.qualified_at,
        "created_at": s.created_at,
        "tier": s.tier,
        **routing_values(s),
    }


ROUTING_COLUMNS = (
    "routing",
    "owner",
    "team",
    "nurture_campaign",
    "routed_at",
    "sla_due_at",
    "sla_breached_at",
)


def routing_values(status: LeadStatus) -> dict[str, Any]:
    return {name: getattr(status, name) for name in ROUTING_COLUMNS}


WRITTEN = "written_generation"


def written_generation(conn: Connection) -> int | None:
    """The generation a lead writer's transaction stamps on the lead, account and identity
    rows it writes, so that other processes holding those rows in memory know to read them
    again (`written_since`). Every write of such a row must set it."""
    return conn.info.get(GENERATION)


def save_routing_columns(conn: Connection, lead_id: str, status: LeadStatus) -> None:
    """Write where a lead was routed and its SLA (routing outside ingestion)."""
    values = {**routing_values(status), WRITTEN: written_generation(conn)}
    conn.execute(leads.update().where(leads.c.id == lead_id).values(values))


@dataclass(slots=True)
class Written:
    """What other processes wrote since a generation: the leads (ids only), the accounts
    (read anew) and the identity keys."""

    leads: set[str]
    accounts: dict[str, Account]
    identities: set[tuple[str, str]]


def written_since(conn: Connection, generation: int) -> Written:
    """The lead, account and identity rows written after `generation`: each table's index on
    `written_generation` finds them."""
    lead_ids = set(
        conn.execute(select(leads.c.id).where(leads.c.written_generation > generation)).scalars()
    )
    query = select(accounts).where(accounts.c.written_generation > generation)
    found = {account.account_id: account for account in map(_account, conn.execute(query))}
    keys = select(identities.c.kind, identities.c.value).where(
        identities.c.written_generation > generation
    )
    return Written(lead_ids, found, {(kind, value) for kind, value in conn.execute(keys)})


def _state(data: Any, rule_count: int, lenient: bool) -> LeadState:
    try:
        return LeadState.from_json(data, rule_count)
    except ValueError:
        if not lenient:
            raise
        return LeadState(rule_count)


def load_leads(
    conn: Connection,
    ids: Iterable[str],
    rule_count: int,
    *,
    lenient: bool = False,
    with_state: bool = True,
) -> dict[str, StoredLead]:
    """The stored leads among `ids`. Without `with_state` their rule states are not read
    (each gets an empty one; `load_states` reads some): the state is most of a row's
    decoding, and a caller that scores leads some other way (a batch engine's write-back)
    needs few of them."""
    found: dict[str, StoredLead] = {}
    columns = leads.c if with_state else [c for c in leads.c if c.name != "state"]
    for part in chunks(sorted(set(ids))):
        for row in conn.execute(select(*columns).where(leads.c.id.in_(part))):
            stored = lead_from_row(row, rule_count, lenient=lenient)
            found[stored.record.lead_id] = stored
    return found


def load_states(
    conn: Connection, records: dict[str, LeadRecord], rule_count: int, *, lenient: bool = False
) -> None:
    """Read these leads' rule states into their records (leads loaded without them)."""
    for part in chunks(sorted(records)):
        for lead_id, data in conn.execute(
            select(leads.c.id, leads.c.state).where(leads.c.id.in_(part))
        ):
            records[lead_id].state = _state(data, rule_count, lenient)


def save_leads(
    conn: Connection,
    stored: Sequence[StoredLead],
    existing: set[str],
    saved: dict[str, SavedLead] | None = None,
) -> None:
    """Insert new leads and update existing ones.

    With `saved` (what the store holds of each lead's profile and lifecycle columns, kept
    by the caller since it read or last wrote them) an update sets those columns only when
    they changed: most messages move a score and nothing else, and each column set costs
    its serialising and its index entries. `saved` is brought up to date."""
    inserts = []
    shapes: dict[tuple[bool, bool], list[dict[str, Any]]] = {}
    generation = written_generation(conn)
    for lead in stored:
        lead_id = lead.record.lead_id
        before = after = None
        if saved is not None:
            before, after = saved.get(lead_id), saved_lead(lead)
            saved[lead_id] = after
        if lead_id not in existing:
            row = lead_values(lead)
            row[WRITTEN] = generation
            inserts.append(row)
            continue
        if before is None or after is None:
            shape = (True, True)
        else:
            shape = (after.profile != before.profile, after.lifecycle != before.lifecycle)
        row = _changed_values(lead, *shape)
        row[WRITTEN] = generation
        row[MATCH] = lead_id
        shapes.setdefault(shape, []).append(row)
    insert_rows(conn, leads, inserts)
    for rows in shapes.values():
        update_rows(conn, leads, "id", rows)


@dataclass(frozen=True, slots=True)
class SavedLead:
    """A lead's profile and lifecycle columns as the store holds them (compared, never
    written: `lead_values` writes)."""

    profile: tuple[Any, ...]
    lifecycle: tuple[Any, ...]


# one call each, not a getattr per column: this runs for every lead a transaction writes
_PROFILE = attrgetter(
    "traits.revision",  # the traits as they are now (their dicts change only with it)
    "account_id",
    "account_stamp",
    "source",
    "campaign",
    "source_stamp",
)
_LIFECYCLE = attrgetter(
    "stage", "stage_at", "recycled_at", "qualified_at", "created_at", "tier", *ROUTING_COLUMNS
)


def saved_lead(stored: StoredLead) -> SavedLead:
    return SavedLead(_PROFILE(stored.record), _LIFECYCLE(stored.status))


def _changed_values(stored: StoredLead, profile: bool, lifecycle: bool) -> dict[str, Any]:
    """The columns of an existing lead to set: its score and rule state always, its
    profile and lifecycle columns when they changed."""
    row = _score_values(stored)
    if profile:
        row.update(_profile_values(stored))
    if lifecycle:
        row.update(_lifecycle_values(stored))
    return row


_ACCOUNTS = {
    # as `_EXISTING`: a JSON array or an array parameter; and the JSON columns decoded by
    # orjson (SQLite gives their text), not by SQLAlchemy's JSON type
    "sqlite": "SELECT id, traits, trait_stamps FROM accounts "
    "WHERE id IN (SELECT value FROM json_each(?))",
    "postgresql": "SELECT id, traits, trait_stamps FROM accounts WHERE id = ANY(%s)",
}


def _id_array(conn: Connection, ids: Sequence[str]) -> Any:
    """Ids as the one parameter of `_EXISTING`, `_IDENTITIES` or `_ACCOUNTS`: a JSON
    array (SQLite's `json_each`) or an array (PostgreSQL's `= ANY`)."""
    return orjson.dumps(list(ids)).decode() if conn.dialect.name == "sqlite" else list(ids)


def load_accounts(conn: Connection, ids: Iterable[str]) -> dict[str, Account]:
    found: dict[str, Account] = {}
    for part in chunks(sorted(set(ids)), 10_000):
        param = _id_array(conn, part)
        for account_id, traits, stamps in conn.exec_driver_sql(
            _ACCOUNTS[conn.dialect.name], (param,)
        ):
            found[account_id] = Account(
                account_id, Traits.from_json(_decoded(traits), _decoded(stamps))
            )
    return found


def _decoded(value: Any) -> Any:
    """A JSON column's value read through the driver: text on SQLite, decoded already by
    PostgreSQL's driver."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _account(row: Any) -> Account:
    m = row._mapping
    return Account(m["id"], Traits.from_json(m["traits"], m["trait_stamps"]))


def save_accounts(
    conn: Connection, items: Sequence[Account], existing: set[str], at: float
) -> None:
    generation = written_generation(conn)
    rows = [
        {
            "id": a.account_id,
            "traits": a.traits.values,
            "trait_stamps": a.traits.to_json(),
            "updated_at": at,
            WRITTEN: generation,
        }
        for a in items
    ]
    insert_rows(conn, accounts, [r for r in rows if r["id"] not in existing])
    update_rows(conn, accounts, "id", [{**r, MATCH: r["id"]} for r in rows if r["id"] in existing])


_IDENTITIES = {
    "sqlite": "SELECT value, lead_id FROM identities "
    "WHERE kind = ? AND value IN (SELECT value FROM json_each(?))",
    "postgresql": "SELECT value, lead_id FROM identities WHERE kind = %s AND value = ANY(%s)",
}


def load_identities(
    conn: Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """The stored lead of each (kind, id) key that has one: one statement per kind and
    10,000 ids (a JSON array on SQLite, an array on PostgreSQL)."""
    found: dict[tuple[str, str], str] = {}
    by_kind: dict[str, list[str]] = {}
    for kind, value in keys:
        by_kind.setdefault(kind, []).append(value)
    sql = _IDENTITIES[conn.dialect.name]
    for kind, values in by_kind.items():
        for part in chunks(sorted(set(values)), 10_000):
            param = _id_array(conn, part)
            for value, lead_id in conn.exec_driver_sql(sql, (kind, param)):
                found[(kind, value)] = lead_id
    return found


def account_members(conn: Connection, account_ids: Iterable[str]) -> set[str]:
    """The stored leads linked to these accounts."""
    found: set[str] = set()
    for part in chunks(sorted(account_ids)):
        found.update(conn.scalars(select(leads.c.id).where(leads.c.account_id.in_(part))))
    return found


def save_identities(conn: Connection, rows: Sequence[tuple[str, str, str]]) -> None:
    generation = written_generation(conn)
    insert_rows(
        conn,
        identities,
        [{"kind": k, "value": v, "lead_id": lead, WRITTEN: generation} for k, v, lead in rows],
    )


def merge_leads(conn: Connection, merges: Sequence[tuple[str, str]]) -> None:
    """Repoint everything of each merged-away lead to the lead it merged into, in order."""
    if not merges:
        return
    pairs = [{"lead_id": target, MATCH: source} for source, target in merges]
    generation = written_generation(conn)
    update_rows(conn, identities, "lead_id", [{**p, WRITTEN: generation} for p in pairs])
    for table in (
        events,
        ledger,
        transitions,
        routings,
        sla_breaches,
        webhook_outbox,
    ):
        update_rows(conn, table, "lead_id", pairs)
    conn.execute(delete(leads).where(leads.c.id.in_([source for source, _ in merges])))


_EXISTING = {
    # one statement for thousands of ids: a JSON array (SQLite) or an array (PostgreSQL)
    # parameter instead of IN lists of a few hundred — measured, 40 % less time per id
    "sqlite": "SELECT message_id FROM events WHERE message_id IN (SELECT value FROM json_each(?))",
    "postgresql": "SELECT message_id FROM events WHERE message_id = ANY(%s)",
}


def existing_message_ids(conn: Connection, ids: Sequence[str]) -> set[str]:
    """Which of these messageIds the store holds already."""
    found: set[str] = set()
    for part in chunks(list(ids), 10_000):
        param = _id_array(conn, part)
        found.update(row[0] for row in conn.exec_driver_sql(_EXISTING[conn.dialect.name], (param,)))
    return found


def event_row(event: ActivityEvent, lead_id: str, received_at: float) -> dict[str, Any]:
    """The message is stored as it came when we have its JSON, else in Segment's shape."""
    payload = JsonText(event.raw.decode()) if event.raw is not None else event.to_segment()
    return {
        "message_id": event.message_id,
        "lead_id": lead_id,
        "type": event.type,
        "name": event.event or event.type,
        "ts": event.timestamp,
        "received_at": received_at,
        "payload": payload,
    }


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert many rows through the driver's executemany.

    The statement is SQLAlchemy's, compiled once per table and dialect; the rows skip
    SQLAlchemy's per-row bind processing (JSON columns are serialised here with orjson),
    which measured as a third of bulk ingestion's time.
    """
    if rows:
        _execute_many(conn, table, rows, None)


def update_rows(conn: Connection, table: Table, key: str, rows: Sequence[dict[str, Any]]) -> None:
    """Update many rows through the driver's executemany: each row dict gives the columns to
    set, and `match` the value of column `key` that picks the row to update."""
    if rows:
        _execute_many(conn, table, rows, key)


class JsonText(str):
    """A JSON column's value that is already JSON text (a message as it came): written as
    is, not serialised again."""

    __slots__ = ()


_STATEMENTS: dict[tuple[Any, ...], tuple[str, tuple[str, ...], bool]] = {}
MATCH = "match"


def _execute_many(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key: str | None
) -> None:
    columns = tuple(c for c in rows[0] if c != MATCH)
    cache_key = (conn.dialect.name, table.name, columns, key)
    found = _STATEMENTS.get(cache_key)
    if found is None:
        values = {c: bindparam(f"p_{c}") for c in columns}
        if key is None:
            statement: Any = insert(table).values(values)
        else:
            statement = update(table).where(table.c[key] == bindparam(MATCH)).values(values)
        compiled = statement.compile(dialect=conn.dialect)
        if compiled.positional:
            names = tuple(compiled.positiontup or ())
        else:
            names = (*(f"p_{c}" for c in columns), *((MATCH,) if key else ()))
        found = (str(compiled), names, bool(compiled.positional))
        _STATEMENTS[cache_key] = found
    sql, names, positional = found
    json_columns = {c.name for c in table.c if isinstance(c.type, JSON)}
    fields = [n[2:] if n.startswith("p_") else n for n in names]
    pick = itemgetter(*fields)
    json_at = [i for i, f in enumerate(fields) if f in json_columns]
    dumps = orjson.dumps
    params: list[Any] = []
    for row in rows:
        picked = pick(row)
        items = list(picked) if len(fields) > 1 else [picked]
        for i in json_at:
            value = items[i]
            if value is not None and type(value) is not JsonText:
                items[i] = dumps(value).decode()
        params.append(tuple(items) if positional else dict(zip(names, items, strict=True)))
    conn.exec_driver_sql(sql, params)


def transition_row(change: StageChanged, model_version_id: int | None) -> dict[str, Any]:
    return {
        "lead_id": change.lead_id,
        "from_stage": str(change.from_stage),
        "to_stage": str(change.to_stage),
        "action": change.action,
        "actor": change.actor,
        "reason": change.reason,
        "at": change.at,
        "model_version_id": model_version_id,
        "details": dict(change.details),
    }


def payload_text(conn: Connection | Engine) -> ColumnElement[str]:
    """The stored messages' column as JSON text, which `stored_event` decodes in one step
    (msgspec, as ingestion does) rather than through a dict the driver builds first."""
    return json_text(conn, events.c.payload)


def json_text(conn: Connection | Engine, column: ColumnElement[Any]) -> ColumnElement[str]:
    """A JSON column as its text, for the caller to decode (PostgreSQL: `jsonb`'s text)."""
    if conn.dialect.name == "postgresql":
        return cast(column, Text)
    return type_coerce(column, Text)  # SQLite keeps the text itself


def stored_event(payload: dict[str, Any] | str, ts: float) -> ActivityEvent:
    """A stored message (JSON text from `payload_text`, or decoded) back as an event, at its
    stored time (a message sent without a timestamp took the time it was received)."""
    if isinstance(payload, str):
        event = decode_line(payload, received_at=ts)
    else:
        event = decode_message(payload, received_at=ts)
    if event.timestamp != ts:  # the payload's text time is rounded to milliseconds
        event = msgspec.structs.replace(event, timestamp=ts)
    return event


def rebuild_states(
    conn: Connection, compiled: CompiledModel, records: dict[str, LeadRecord], ids: Sequence[str]
) -> None:
    """Build these leads' rule states anew from their stored events: the rules changed since
    the state was built, or a batch write-back stored scores without one."""
    for lead_id in ids:
        records[lead_id].state = compiled.new_state()
    for part in chunks(ids):
        query = select(events.c.lead_id, payload_text(conn), events.c.ts).where(
            events.c.lead_id.in_(part), events.c.type.in_(("track", "page", "screen"))
        )
        for lead_id, payload, ts in conn.execute(query):
            compiled.apply(records[lead_id].state, stored_event(payload, ts))


def lock_lead(conn: Connection, given: str, rule_count: int) -> StoredLead:
    """The lead a user means (any of its ids), locked for this transaction on PostgreSQL
    (SQLite's writer already holds the whole store); `LeadNotFound` when there is none."""
    resolved = resolve_lead_id(conn, given)
    query = select(leads).where(leads.c.id == (resolved or given))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first() if resolved is not None else None
    if row is None:
        raise LeadNotFound(given)
    return lead_from_row(row, rule_count, lenient=True)


def resolve_lead_id(conn: Connection, given: str) -> str | None:
    """The lead a user means: its id, or any userId / anonymousId (or `anon:<id>`) that
    belongs to it, including ids of leads merged into it."""
    if conn.execute(select(leads.c.id).where(leads.c.id == given)).first() is not None:
        return given
    value = given.removeprefix("anon:")
    found = conn.execute(
        select(identities.c.lead_id)
        .where(identities.c.value == value)
        .order_by(
            identities.c.kind.desc()  # a userId before an anonymousId of the same text
        )
    ).first()
    return found[0] if found else None
