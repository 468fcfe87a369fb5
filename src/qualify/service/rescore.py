"""Rescoring every lead: after a model is activated (states rebuilt from the events), or as
time passes (windows close, points decay or expire: `qualify refresh`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, select

from qualify.core.leadbook import LeadBook
from qualify.core.scoring import CompiledModel, score_state
from qualify.errors import QualifyError
from qualify.model import ScoringModel
from qualify.service.progress import Ledger, apply_score, qualify_record
from qualify.service.routing import Routing, routing_input
from qualify.service.webhooks import Outbox, emit_lead_changes
from qualify.store import repository as repo
from qualify.store.database import writing
from qualify.store.tables import events, leads, ledger, transitions
from qualify.store.versions import active_version, list_versions, save_version, set_active

__all__ = [
    "RescoreReport",
    "activate_model",
    "activate_version",
    "requalify_recycled",
    "rescore_all",
]

BATCH = 500


@dataclass(slots=True)
class RescoreReport:
    version_id: int
    leads: int = 0
    changed: int = 0  # leads whose stage, MQL/PQL flag, tier or grade changed
    new_mqls: int = 0


def activate_model(
    engine: Engine,
    model: ScoringModel,
    *,
    clock: Callable[[], float] = time.time,
    created_by: str = "cli",
    on_total: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> RescoreReport:
    """Store the model as a version, make it active, and rescore every lead with it."""
    now = clock()
    with writing(engine) as conn:
        version_id = save_version(conn, model, created_by, now)
        set_active(conn, version_id, now)
    return rescore_all(engine, rebuild=True, now=now, on_total=on_total, progress=progress)


def activate_version(
    engine: Engine,
    version_id: int,
    *,
    clock: Callable[[], float] = time.time,
    on_total: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> RescoreReport:
    """Make a stored version active, and rescore every lead with it."""
    now = clock()
    with writing(engine) as conn:
        if not any(v.id == version_id for v in list_versions(conn)):
            raise QualifyError(f"no model version #{version_id}: see `GET /api/models`")
        set_active(conn, version_id, now)
    return rescore_all(engine, rebuild=True, now=now, on_total=on_total, progress=progress)


def rescore_all(
    engine: Engine,
    *,
    rebuild: bool,
    now: float,
    on_total: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> RescoreReport:
    """Score every lead at `now` with the active model, in batches of one transaction each.

    `rebuild` re-derives each lead's rule state from its stored events (the rules changed);
    otherwise the stored state is valued anew (time passed).
    """
    with engine.connect() as conn:
        version_id, model = active_version(conn)
        ids = list(conn.execute(select(leads.c.id).order_by(leads.c.id)).scalars())
    compiled = CompiledModel(model)
    report = RescoreReport(version_id)
    if on_total is not None:
        on_total(len(ids))
    for batch in repo.chunks(ids, BATCH):
        with writing(engine) as conn:
            _rescore_batch(conn, compiled, version_id, list(batch), rebuild, now, report)
        if progress is not None:
            progress(len(batch))
    return report


def requalify_recycled(engine: Engine, *, now: float, limit: int = BATCH) -> RescoreReport:
    """Rescore recycled leads whose `requalify_after` wait ended since they were last
    scored: those whose criteria hold again become MQLs (and are routed) without waiting
    for their next event. Each lead is looked at once after its wait (it is then scored
    later than the wait's end)."""
    with writing(engine) as conn:
        version_id, model = active_version(conn)
        report = RescoreReport(version_id)
        wait = model.lifecycle.requalify_after
        if wait is None:
            return report  # recycled leads may qualify at their next event
        eligible = leads.c.recycled_at + wait
        ids = list(
            conn.execute(
                select(leads.c.id)
                .where(
                    leads.c.stage == "nurture",
                    leads.c.recycled_at <= now - wait,
                    leads.c.scored_at.is_(None) | (leads.c.scored_at < eligible),
                )
                .order_by(leads.c.id)
                .limit(limit)
            ).scalars()
        )
        if ids:
            _rescore_batch(conn, CompiledModel(model), version_id, ids, False, now, report)
    return report


def _rescore_batch(
    conn: Connection,
    compiled: CompiledModel,
    version_id: int,
    ids: list[str],
    rebuild: bool,
    now: float,
    report: RescoreReport,
) -> None:
    stored = repo.load_leads(conn, ids, len(compiled.rules), lenient=True)
    # A lead scored by another version (an activation that stopped half-way) is rebuilt too.
    stale = [i for i, s in stored.items() if rebuild or s.status.model_version_id != version_id]
    book = LeadBook(compiled)
    book.leads = {i: s.record for i, s in stored.items()}
    book.accounts = repo.load_accounts(
        conn, {s.record.account_id for s in stored.values() if s.record.account_id}
    )
    for lead_id in stale:
        book.leads[lead_id].state = compiled.new_state()
    if stale:
        query = select(events.c.lead_id, events.c.payload, events.c.ts).where(
            events.c.lead_id.in_(stale), events.c.type.in_(("track", "page", "screen"))
        )
        for lead_id, payload, ts in conn.execute(query):
            compiled.apply(book.leads[lead_id].state, repo.stored_event(payload, ts))
    ledger_rows = Ledger(version_id, now)
    changes = []
    qualified: list[repo.StoredLead] = []
    outbox = Outbox.start(conn)
    stale_set = set(stale)
    for lead_id, item in stored.items():
        record, status = item.record, item.status
        profile = book.profile(record, now)
        result = score_state(compiled, profile, record.state, now)
        before = (status.stage, status.mql, status.pql, status.tier, status.grade)
        reason = "model" if lead_id in stale_set else "time"
        ledger_rows.settle(lead_id, status.rule_points, result.rule_points(), reason)
        since = now if lead_id in stale_set else (status.scored_at or now)
        score_before = (status.score, status.pql)
        apply_score(status, result, version_id, now)
        change = qualify_record(
            compiled, book, record, status, since=since, now=now, check_now=True
        )
        if change is not None:
            changes.append(repo.transition_row(change, version_id))
            qualified.append(item)
        if outbox.subscriptions:
            emit_lead_changes(outbox, lead_id, status, score_before, change, now)
        if before != (status.stage, status.mql, status.pql, status.tier, status.grade):
            report.changed += 1
    report.leads += len(stored)
    report.new_mqls += len(changes)
    repo.insert_rows(conn, ledger, ledger_rows.rows)
    repo.insert_rows(conn, transitions, changes)
    if qualified and compiled.model.routing:
        account_ids = {s.record.account_id for s in qualified if s.record.account_id}
        routing = Routing.start(conn, compiled.model, version_id, account_ids, outbox)
        for item in qualified:
            lead = routing_input(book, item.record, item.status, now)
            routing.route(lead, item.status, now)
        routing.write(conn)
    repo.save_leads(conn, list(stored.values()), set(stored))
    outbox.write(conn)
