"""The read side: lead lists, one lead's full explanation, and funnel counts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select

from qualify.core.activity import format_time
from qualify.core.leadbook import LeadBook
from qualify.core.scoring import CompiledModel, LeadScore, score_state
from qualify.errors import LeadNotFound, QualifyError
from qualify.store import repository as repo
from qualify.store.tables import events, leads, ledger, routings, sla_breaches, transitions
from qualify.store.versions import active_version

__all__ = [
    "SORTS",
    "Explanation",
    "LeadFilters",
    "explain_lead",
    "funnel",
    "iso_times",
    "list_leads",
    "page_leads",
    "recent_events",
]

STAGE_ORDER = ("lead", "mql", "sql", "opportunity", "customer", "nurture", "disqualified")
SUMMARY_COLUMNS = (
    "id",
    "stage",
    "score",
    "fit",
    "engagement",
    "tier",
    "grade",
    "mql",
    "pql",
    "source",
    "campaign",
    "qualified_at",
    "scored_at",
    *repo.ROUTING_COLUMNS,
)


def list_leads(
    engine: Engine,
    *,
    stage: str | None = None,
    tier: str | None = None,
    owner: str | None = None,
    limit: int | None = 50,
) -> list[dict[str, Any]]:
    """Leads by score, highest first, optionally filtered by stage, tier and owner."""
    query = select(*(leads.c[c] for c in SUMMARY_COLUMNS)).order_by(
        leads.c.score.desc(), leads.c.id
    )
    if stage:
        query = query.where(leads.c.stage == stage)
    if tier:
        query = query.where(leads.c.tier == tier)
    if owner:
        query = query.where(leads.c.owner == owner)
    if limit:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def iso_times(row: dict[str, Any]) -> dict[str, Any]:
    """A row for JSON: its moments (`*_at` columns, stored as epoch seconds) in ISO-8601."""
    return {
        k: format_time(v) if k.endswith("_at") and isinstance(v, float) else v
        for k, v in row.items()
    }


@dataclass(frozen=True, slots=True)
class LeadFilters:
    stage: str | None = None
    tier: str | None = None
    grade: str | None = None
    source: str | None = None
    owner: str | None = None
    min_score: float | None = None


# sort name → (column, descending); ties are broken by lead id, so pages never overlap
SORTS = {
    "-score": ("score", True),
    "score": ("score", False),
    "-stage_at": ("stage_at", True),
    "stage_at": ("stage_at", False),
    "id": ("id", False),
}


def page_leads(
    engine: Engine,
    filters: LeadFilters,
    *,
    sort: str = "-score",
    after: tuple[Any, str] | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], tuple[Any, str] | None]:
    """One page of leads and the position after its last row (None on the last page).

    Keyset pagination: a page starts after the (sort value, id) of the previous page's last
    row, so pages stay right while leads are being rescored (no offsets that shift).
    """
    name, descending = SORTS[sort]
    column = leads.c[name]
    query = select(*(leads.c[c] for c in SUMMARY_COLUMNS), leads.c.stage_at)
    for field in ("stage", "tier", "grade", "source", "owner"):
        value = getattr(filters, field)
        if value is not None:
            query = query.where(leads.c[field] == value)
    if filters.min_score is not None:
        query = query.where(leads.c.score >= filters.min_score)
    if after is not None:
        value, last_id = after
        if name == "id":
            query = query.where(leads.c.id > last_id)
        elif descending:
            query = query.where(or_(column < value, and_(column == value, leads.c.id > last_id)))
        else:
            query = query.where(or_(column > value, and_(column == value, leads.c.id > last_id)))
    order = column.desc() if descending else column.asc()
    query = query.order_by(order, leads.c.id).limit(limit + 1)
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    position = (rows[-1][name], rows[-1]["id"]) if more and rows else None
    return rows, position


def recent_events(engine: Engine, lead_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """A lead's latest messages, newest first, as stored."""
    query = (
        select(events.c.message_id, events.c.type, events.c.name, events.c.ts, events.c.payload)
        .where(events.c.lead_id == lead_id)
        .order_by(events.c.ts.desc(), events.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [{**dict(r._mapping), "ts": format_time(r.ts)} for r in conn.execute(query)]


def funnel(engine: Engine) -> dict[str, Any]:
    """Lead counts by stage, and how many ever became MQL, SQL and customer."""
    with engine.connect() as conn:
        by_stage = dict(
            conn.execute(select(leads.c.stage, func.count()).group_by(leads.c.stage)).all()
        )
        reached = dict(
            conn.execute(
                select(
                    transitions.c.to_stage, func.count(transitions.c.lead_id.distinct())
                ).group_by(transitions.c.to_stage)
            ).all()
        )
        total = conn.execute(select(func.count()).select_from(leads)).scalar() or 0
        event_count = conn.execute(select(func.count()).select_from(events)).scalar() or 0
    return {
        "leads": total,
        "events": event_count,
        "by_stage": {s: by_stage.get(s, 0) for s in STAGE_ORDER},
        "ever": {s: reached.get(s, 0) for s in ("mql", "sql", "opportunity", "customer")},
    }


@dataclass(frozen=True, slots=True)
class Explanation:
    lead: dict[str, Any]
    score: LeadScore
    events: dict[str, dict[str, Any]]  # messageId → name, type, time of the earning events
    transitions: Sequence[dict[str, Any]]
    ledger: Sequence[dict[str, Any]]
    routing: dict[str, Any]  # where the lead is routed now, its SLA, and every decision

    def to_dict(self) -> dict[str, Any]:
        contributions = []
        for c in self.score.contributions:
            item = c.to_dict()
            item["events"] = [{"message_id": m, **self.events.get(m, {})} for m in c.events]
            contributions.append(item)
        score = self.score.to_dict()
        score["contributions"] = contributions
        return {
            "lead": self.lead,
            **score,
            "transitions": list(self.transitions),
            "routing": self.routing,
            "ledger": list(self.ledger),
        }


def explain_lead(
    engine: Engine, lead_id: str, *, ledger_limit: int = 200, now: float | None = None
) -> Explanation:
    """Every point of a lead with its rule and events, its stage history, its routing and
    SLA (time left as of `now`), and its ledger."""
    now = time.time() if now is None else now
    with engine.connect() as conn:
        version_id, model = active_version(conn)
        compiled = CompiledModel(model)
        found = repo.resolve_lead_id(conn, lead_id)
        if found is None:
            raise LeadNotFound(lead_id)
        lead_id = found
        row = conn.execute(select(leads).where(leads.c.id == lead_id)).first()
        assert row is not None
        stored = repo.lead_from_row(row, len(compiled.rules), lenient=True)
        if stored.status.model_version_id != version_id:
            raise QualifyError(
                f"lead `{lead_id}` was scored with another model version than the active one: "
                "run `qualify refresh` to rescore it"
            )
        if stored.status.state_version_id != version_id:  # scores written back by a batch
            repo.rebuild_states(conn, compiled, {lead_id: stored.record}, [lead_id])
        book = LeadBook(compiled)
        book.accounts = repo.load_accounts(
            conn, [stored.record.account_id] if stored.record.account_id else []
        )
        as_of = stored.status.scored_at or 0.0
        result = score_state(
            compiled, book.profile(stored.record, as_of), stored.record.state, as_of, explain=True
        )
        wanted = sorted({m for c in result.contributions for m in c.events})
        found: dict[str, dict[str, Any]] = {}
        for part in repo.chunks(wanted):
            query = select(events.c.message_id, events.c.type, events.c.name, events.c.ts).where(
                events.c.message_id.in_(part)
            )
            for message_id, kind, name, ts in conn.execute(query):
                found[message_id] = {"type": kind, "name": name, "timestamp": format_time(ts)}
        history = [
            {**dict(r._mapping), "at": format_time(r.at)}
            for r in conn.execute(
                select(transitions)
                .where(transitions.c.lead_id == lead_id)
                .order_by(transitions.c.id)
            )
        ]
        decisions = [
            {**dict(r._mapping), "at": format_time(r.at)}
            for r in conn.execute(
                select(routings).where(routings.c.lead_id == lead_id).order_by(routings.c.id)
            )
        ]
        breaches = [
            iso_times(dict(r._mapping))
            for r in conn.execute(
                select(sla_breaches.c.member, sla_breaches.c.due_at, sla_breaches.c.breached_at)
                .where(sla_breaches.c.lead_id == lead_id)
                .order_by(sla_breaches.c.id)
            )
        ]
        entries = [
            {**dict(r._mapping), "at": format_time(r.at)}
            for r in conn.execute(
                select(ledger)
                .where(ledger.c.lead_id == lead_id)
                .order_by(ledger.c.id.desc())
                .limit(ledger_limit)
            )
        ]
    summary = {c: row._mapping[c] for c in SUMMARY_COLUMNS}
    summary["traits"] = row._mapping["traits"]
    summary["account_id"] = row._mapping["account_id"]
    summary["model_version_id"] = version_id
    routing = routing_summary(stored.status, now)
    routing["history"] = decisions
    routing["sla_breaches"] = breaches
    return Explanation(summary, result, found, history, entries[::-1], routing)


def routing_summary(status: repo.LeadStatus, now: float) -> dict[str, Any]:
    """Where a lead is routed and its SLA: due when, time left (negative once late)."""
    sla = None
    if status.sla_due_at is not None and status.stage == "mql":
        sla = {
            "due_at": format_time(status.sla_due_at),
            "seconds_left": round(status.sla_due_at - now, 3),
            "breached": status.sla_due_at < now,
            "breached_at": (
                format_time(status.sla_breached_at) if status.sla_breached_at else None
            ),
        }
    return {
        "kind": status.routing,
        "owner": status.owner,
        "team": status.team,
        "campaign": status.nurture_campaign,
        "routed_at": format_time(status.routed_at) if status.routed_at else None,
        "sla": sla,
    }
