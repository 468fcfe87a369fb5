"""Rescoring every lead: after a model is activated (states rebuilt from the events), or as
time passes (windows close, points decay or expire: `qualify refresh`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, func, select

from qualify.core.leadbook import LeadBook
from qualify.core.lifecycle import Stage
from qualify.core.scoring import CompiledModel, LeadScore, score_state
from qualify.errors import QualifyError
from qualify.model import ScoringModel
from qualify.service.progress import Ledger, apply_score, qualify_now, qualify_record
from qualify.service.routing import Routing, routing_input
from qualify.service.webhooks import Outbox, emit_lead_changes
from qualify.store import repository as repo
from qualify.store.database import writing
from qualify.store.tables import leads, ledger, transitions
from qualify.store.versions import active_version, list_versions, save_version, set_active

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "BulkEngine",
    "RescoreReport",
    "activate_model",
    "activate_version",
    "requalify_recycled",
    "rescore_all",
    "rescore_in_bulk",
    "write_back",
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
    bulk: BulkEngine | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> RescoreReport:
    """Store the model as a version, make it active, and rescore every lead with it: by
    the live engine, or with `bulk` by a batch engine (faster on a large store)."""
    now = clock()
    with writing(engine) as conn:
        version_id = save_version(conn, model, created_by, now)
        set_active(conn, version_id, now)
    return _rescore(engine, now, bulk, on_total, progress, on_phase)


@dataclass(frozen=True, slots=True)
class BulkEngine:
    """A batch engine to rescore with: `duckdb`, `postgres` (the store itself, in place) or
    `spark` (at `master`)."""

    name: str
    master: str = "local[*]"


def rescore_in_bulk(
    engine: Engine,
    bulk: BulkEngine,
    *,
    remodel: bool,
    now: float,
    on_total: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> RescoreReport:
    """Score every lead with the active model on a batch engine, and write the scores back
    (`write_back`). `remodel`: the model just changed, so every lead's points change for
    the model's sake (the ledger's reason); otherwise time passed. `on_phase` hears which
    of the two is running: no lead is done until the scoring ends, so a job that counted
    only leads would sit at zero for most of its time."""
    from qualify.batch.engine import open_backend, run_store

    with engine.connect() as conn:
        version_id, model = active_version(conn)
        leads_now = conn.execute(select(func.count()).select_from(leads)).scalar_one()
    if on_total is not None:
        on_total(leads_now)
    if on_phase is not None:
        on_phase(f"scoring every lead on {bulk.name}")
    url = engine.url.render_as_string(hide_password=False)
    backend = open_backend(bulk.name, url=url, master=bulk.master)
    try:
        scores = run_store(model, backend, engine, now).table()
    finally:
        backend.close()
    if on_phase is not None:
        on_phase("writing the scores back")
    return write_back(
        engine,
        CompiledModel(model),
        version_id,
        scores,
        remodel=remodel,
        read_at=now,
        now=now,
        on_total=on_total,
        progress=progress,
    )


def activate_version(
    engine: Engine,
    version_id: int,
    *,
    clock: Callable[[], float] = time.time,
    on_total: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
    bulk: BulkEngine | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> RescoreReport:
    """Make a stored version active, and rescore every lead with it (as `activate_model`)."""
    now = clock()
    with writing(engine) as conn:
        if not any(v.id == version_id for v in list_versions(conn)):
            raise QualifyError(f"no model version #{version_id}: see `GET /api/models`")
        set_active(conn, version_id, now)
    return _rescore(engine, now, bulk, on_total, progress, on_phase)


def _rescore(
    engine: Engine,
    now: float,
    bulk: BulkEngine | None,
    on_total: Callable[[int], None] | None,
    progress: Callable[[int], None] | None,
    on_phase: Callable[[str], None] | None = None,
) -> RescoreReport:
    """Every lead rescored after an activation: live, or in bulk."""
    if bulk is not None:
        return rescore_in_bulk(
            engine,
            bulk,
            remodel=True,
            now=now,
            on_total=on_total,
            progress=progress,
            on_phase=on_phase,
        )
    if on_phase is not None:
        on_phase("rescoring every lead")
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
    remodelled = {
        i for i, s in stored.items() if rebuild or s.status.model_version_id != version_id
    }
    book = _book(conn, compiled, stored)
    _rebuild_stale(conn, compiled, version_id, book, stored, remodelled)
    results = {
        i: score_state(compiled, book.profile(s.record, now), s.record.state, now)
        for i, s in stored.items()
    }
    _write_scores(conn, compiled, version_id, book, stored, results, remodelled, now, report)


def _book(
    conn: Connection, compiled: CompiledModel, stored: dict[str, repo.StoredLead]
) -> LeadBook:
    """The leads and their accounts, for their profiles."""
    book = LeadBook(compiled)
    book.leads = {i: s.record for i, s in stored.items()}
    book.accounts = repo.load_accounts(
        conn, {s.record.account_id for s in stored.values() if s.record.account_id}
    )
    return book


def _rebuild_stale(
    conn: Connection,
    compiled: CompiledModel,
    version_id: int,
    book: LeadBook,
    stored: dict[str, repo.StoredLead],
    remodelled: set[str],
) -> None:
    """Rebuild the rule state of the leads whose stored one does not fit the rules."""
    stale = [
        i for i, s in stored.items() if i in remodelled or s.status.state_version_id != version_id
    ]
    repo.rebuild_states(conn, compiled, book.leads, stale)


def _write_scores(
    conn: Connection,
    compiled: CompiledModel,
    version_id: int,
    book: LeadBook,
    stored: dict[str, repo.StoredLead],
    results: dict[str, LeadScore],
    remodelled: set[str],
    now: float,
    report: RescoreReport,
    *,
    stateless: Collection[str] = (),
) -> None:
    """Ledger, scores, stage changes, routing and webhooks of rescored leads, as one.

    `stateless`: leads scored by a batch engine, without a rule state; only `now` is
    checked for their qualification, and their state is left to be rebuilt by the live
    engine when it next needs it."""
    # what the store holds of their profile and lifecycle columns: a rescore changes no
    # profile, so `save_leads` writes the scores, and lifecycle columns only for the leads
    # whose stage, tier or routing changed here
    saved = {lead_id: repo.saved_lead(item) for lead_id, item in stored.items()}
    ledger_rows = Ledger(version_id, now)
    changes = []
    qualified: list[repo.StoredLead] = []
    outbox = Outbox.start(conn)
    for lead_id in sorted(stored):  # routing's round robins take leads in this order
        item = stored[lead_id]
        record, status, result = item.record, item.status, results[lead_id]
        before = (status.stage, status.mql, status.pql, status.tier, status.grade)
        changed_rules = lead_id in remodelled
        ledger_rows.settle(
            lead_id, status.rule_points, result.rule_points(), "model" if changed_rules else "time"
        )
        since = now if changed_rules else (status.scored_at or now)
        score_before = (status.score, status.pql)
        apply_score(status, result, version_id, now)
        if lead_id in stateless:
            change = qualify_now(compiled, lead_id, status, result, now)
            status.state_version_id = None
            record.state = compiled.new_state()
        else:
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
    repo.save_leads(conn, list(stored.values()), set(stored), saved)
    outbox.write(conn)


# A lead scored this long before a batch engine began reading the store may have changed
# while it read: the write-back rescores it with the live engine instead.
SNAPSHOT_MARGIN = 1.0


def write_back(
    engine: Engine,
    compiled: CompiledModel,
    version_id: int,
    scores: pa.Table,
    *,
    remodel: bool,
    read_at: float,
    now: float,
    chunk: int = 5_000,
    on_total: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> RescoreReport:
    """Store a batch engine's scores (one row per lead, as `BatchRun.table` gives them):
    leads, ledger, stage changes, routing and webhooks, one transaction per `chunk` leads.

    It does what `rescore_all` does, without rebuilding each lead's rule state from its
    events; that is left to the live engine, the next time it touches the lead. Some leads
    need more than their score now, and the live engine rescores them here instead: those
    scored after the engine began reading the store (`read_at`, less a margin: new events
    came in), recycled leads waiting to requalify (their wait is searched), leads whose
    negative points may have lapsed since they were last scored (when the rules did not
    change: `remodel` false), and leads the batch did not score (new since).
    """
    from qualify.batch.engine import score_from_row

    report = RescoreReport(version_id)
    model = compiled.model
    lapsing = bool(compiled.negative_expiring)
    with engine.connect() as conn:
        all_ids = set(conn.execute(select(leads.c.id)).scalars())
    if on_total is not None:
        on_total(len(all_ids))
    covered: set[str] = set()
    for part in scores.to_batches(max_chunksize=chunk):
        rows = {r["lead_id"]: r for r in part.to_pylist()}
        with writing(engine) as conn:
            rule_count = len(compiled.rules)
            stored = repo.load_leads(conn, rows, rule_count, lenient=True, with_state=False)
            remodelled = {
                i for i, s in stored.items() if remodel or s.status.model_version_id != version_id
            }
            live = {
                i
                for i, s in stored.items()
                if (s.status.scored_at or 0.0) >= read_at - SNAPSHOT_MARGIN
                or (s.status.stage is Stage.NURTURE and s.status.recycled_at is not None)
                or (
                    lapsing
                    and i not in remodelled
                    and s.status.stage in (Stage.LEAD, Stage.NURTURE)
                )
            }
            # only the leads the live engine scores here need their rule state
            repo.load_states(conn, {i: stored[i].record for i in live}, rule_count, lenient=True)
            book = _book(conn, compiled, stored)
            only_live = {i: stored[i] for i in live}
            _rebuild_stale(conn, compiled, version_id, book, only_live, remodelled)
            results = {
                i: (
                    score_state(compiled, book.profile(s.record, now), s.record.state, now)
                    if i in live
                    else score_from_row(model, rows[i])
                )
                for i, s in stored.items()
            }
            _write_scores(
                conn,
                compiled,
                version_id,
                book,
                stored,
                results,
                remodelled,
                now,
                report,
                stateless=set(stored) - live,
            )
        covered |= set(stored)
        if progress is not None:
            progress(len(stored))
    missing = sorted(all_ids - covered)
    for batch in repo.chunks(missing, BATCH):  # merged away since, or new since
        with writing(engine) as conn:
            _rescore_batch(conn, compiled, version_id, list(batch), remodel, now, report)
        if progress is not None:
            progress(len(batch))
    return report
