"""Ingestion into the store: messages → events, identities, lead state, ledger, stages.

Messages are taken in batches; each batch is one transaction, so whatever is acknowledged is
durable and consistent (events, scores, ledger and stage changes commit together). Per
batch the leads it touches are loaded once, changed in memory by the same `LeadBook` the
stateless scorer uses, and written back with a few bulk statements.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from sqlalchemy import Connection, Engine

from qualify.core.activity import ActivityEvent
from qualify.core.identity import ANON, USER, IdentityGraph
from qualify.core.leadbook import Applied, LeadBook
from qualify.core.lifecycle import Stage
from qualify.core.scoring import CompiledModel, rule_contribution, score_state
from qualify.service.progress import Ledger, apply_score, qualify_record
from qualify.store import repository as repo
from qualify.store.tables import events, ledger, transitions
from qualify.store.versions import active_version

__all__ = ["IngestReport", "Ingestor"]

Clock = Callable[[], float]


@dataclass(slots=True)
class IngestReport:
    received: int = 0
    ingested: int = 0
    duplicates: int = 0
    leads_touched: int = 0
    new_mqls: int = 0

    def add(self, other: IngestReport) -> None:
        self.received += other.received
        self.ingested += other.ingested
        self.duplicates += other.duplicates
        self.leads_touched += other.leads_touched
        self.new_mqls += other.new_mqls


def _batches(items: Iterable[ActivityEvent], size: int) -> Iterator[list[ActivityEvent]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


class Ingestor:
    """Ingests messages with the store's active model. `clock` is injected for tests."""

    def __init__(self, engine: Engine, *, clock: Clock = time.time, batch_size: int = 2000) -> None:
        self.engine = engine
        self.clock = clock
        self.batch_size = batch_size
        with engine.connect() as conn:
            self.version_id, model = active_version(conn)
        self.compiled = CompiledModel(model)

    def ingest(
        self,
        messages: Iterable[ActivityEvent],
        progress: Callable[[int], None] | None = None,
    ) -> IngestReport:
        """Ingest messages in batches, all valued as of one moment: the clock when it starts.

        One moment for the whole run keeps a file's ledger free of decay noise between its
        own batches; the next run (or `qualify refresh`) moves time on.
        """
        report = IngestReport()
        now = self.clock()
        for batch in _batches(messages, self.batch_size):
            report.add(self.ingest_batch(batch, now=now))
            if progress is not None:
                progress(len(batch))
        return report

    def ingest_batch(self, batch: list[ActivityEvent], *, now: float | None = None) -> IngestReport:
        """One transaction: everything in the batch is stored, scored and staged, or nothing."""
        moment = self.clock() if now is None else now
        with self.engine.begin() as conn:
            return _BatchWork(self, conn, moment).run(batch)


class _BatchWork:
    def __init__(self, ingestor: Ingestor, conn: Connection, now: float) -> None:
        self.compiled = ingestor.compiled
        self.version_id = ingestor.version_id
        self.conn = conn
        self.now = now
        self.ledger = Ledger(ingestor.version_id, now)

    def run(self, batch: list[ActivityEvent]) -> IngestReport:
        report = IngestReport(received=len(batch))
        fresh = self._fresh(batch, report)
        if fresh:
            self._load(fresh)
            self._apply(fresh)
            changes = self._score_touched()
            self._write(fresh, changes)
            report.ingested = len(fresh)
            report.leads_touched = len(self.earliest)
            report.new_mqls = len(changes)
        return report

    def _load(self, fresh: list[ActivityEvent]) -> None:
        """The part of the store this batch touches: identities, leads, accounts."""
        conn, compiled = self.conn, self.compiled
        self.keys = _identity_keys(fresh)
        self.graph = IdentityGraph(repo.load_identities(conn, self.keys))
        lead_ids = {*self.graph.users.values(), *self.graph.anonymous.values()}
        stored = repo.load_leads(conn, lead_ids, len(compiled.rules))
        self.existing_leads = set(stored)
        self.book = LeadBook(compiled, self.graph)
        self.book.leads = {lead_id: s.record for lead_id, s in stored.items()}
        self.statuses = {lead_id: s.status for lead_id, s in stored.items()}
        account_ids = {e.group_id for e in fresh if e.group_id is not None}
        account_ids |= {r.account_id for r in self.book.leads.values() if r.account_id}
        self.book.accounts = repo.load_accounts(conn, account_ids)
        self.existing_accounts = set(self.book.accounts)

    def _apply(self, fresh: list[ActivityEvent]) -> None:
        """Each message changes its lead in memory and leaves an event row and ledger rows."""
        self.event_rows: list[dict[str, Any]] = []
        self.earliest: dict[str, float] = {}  # per touched lead, its earliest new message
        self.merges: list[tuple[str, str]] = []
        for event in fresh:
            applied = self.book.apply(event)
            assert applied is not None  # the batch was deduplicated above
            lead_id = applied.lead_id
            for source, target in applied.merged:
                self.merges.append((source, target))
                self._merge_status(source, target)
            status = self.statuses.get(lead_id)
            if status is None:
                status = repo.LeadStatus(stage_at=event.timestamp, created_at=self.now)
                self.statuses[lead_id] = status
            self.earliest[lead_id] = min(
                self.earliest.get(lead_id, event.timestamp), event.timestamp
            )
            self.event_rows.append(repo.event_row(event, lead_id, self.now))
            self._settle_event(lead_id, status, event, applied)

    def _score_touched(self) -> list[dict[str, Any]]:
        """Score every touched lead as of the batch's clock; qualify those whose criteria
        came to hold. Returns the stage changes to record."""
        compiled, book = self.compiled, self.book
        changes = []
        for lead_id, since in self.earliest.items():
            record, status = book.leads[lead_id], self.statuses[lead_id]
            result = score_state(compiled, book.profile(record, self.now), record.state, self.now)
            self.ledger.settle(lead_id, status.rule_points, result.rule_points(), "time")
            apply_score(status, result, self.version_id, self.now)
            change = qualify_record(compiled, book, record, status, since=since, now=self.now)
            if change is not None:
                changes.append(repo.transition_row(change, self.version_id))
        return changes

    def _write(self, fresh: list[ActivityEvent], changes: list[dict[str, Any]]) -> None:
        """A few bulk statements; the caller's transaction makes them one commit."""
        conn = self.conn
        if self.merges:  # rows of this batch go straight to the lead that survived the merges
            owner = _final_owners(self.merges)
            for rows in (self.event_rows, self.ledger.rows, changes):
                for row in rows:
                    row["lead_id"] = owner.get(row["lead_id"], row["lead_id"])
        repo.insert_rows(conn, events, self.event_rows)
        repo.insert_rows(conn, ledger, self.ledger.rows)
        repo.insert_rows(conn, transitions, changes)
        repo.merge_leads(conn, self.merges)
        final = self.graph.keys
        new_keys = sorted(k for k in self.keys if k in final and k not in self.graph.loaded)
        repo.save_identities(
            conn, [(kind, value, final[(kind, value)]) for kind, value in new_keys]
        )
        touched = [repo.StoredLead(self.book.leads[i], self.statuses[i]) for i in self.earliest]
        repo.save_leads(conn, touched, self.existing_leads - self.book.removed)
        dirty = [self.book.accounts[a] for a in {e.group_id for e in fresh if e.group_id}]
        repo.save_accounts(conn, dirty, self.existing_accounts, self.now)

    def _fresh(self, batch: list[ActivityEvent], report: IngestReport) -> list[ActivityEvent]:
        """The batch without messages seen before (in it or in the store): idempotence."""
        seen: set[str] = set()
        unique = []
        for event in batch:
            if event.message_id in seen:
                report.duplicates += 1
                continue
            seen.add(event.message_id)
            unique.append(event)
        stored = repo.existing_message_ids(self.conn, [e.message_id for e in unique])
        report.duplicates += len(stored)
        return [e for e in unique if e.message_id not in stored]

    def _merge_status(self, source: str, target: str) -> None:
        """The merged-away lead's points move with its ledger rows; its stage wins only
        when the surviving lead has none yet."""
        statuses, earliest = self.statuses, self.earliest
        gone = statuses.pop(source, None)
        if source in earliest:
            first = earliest.pop(source)
            earliest[target] = min(earliest.get(target, first), first)
        if gone is None:
            return
        kept = statuses.get(target)
        if kept is None:
            statuses[target] = gone
            return
        for rule, points in gone.rule_points.items():
            kept.rule_points[rule] = kept.rule_points.get(rule, 0.0) + points
        if kept.stage is Stage.LEAD and gone.stage is not Stage.LEAD:
            kept.stage, kept.stage_at = gone.stage, gone.stage_at
            kept.recycled_at, kept.qualified_at = gone.recycled_at, gone.qualified_at
        kept.created_at = min(kept.created_at, gone.created_at)

    def _settle_event(
        self, lead_id: str, status: repo.LeadStatus, event: ActivityEvent, applied: Applied
    ) -> None:
        """Ledger rows for what this one message changed, valued at the batch's clock."""
        compiled, book = self.compiled, self.book
        record = book.leads[lead_id]
        if applied.merged or applied.profile_changed:
            result = score_state(compiled, book.profile(record, self.now), record.state, self.now)
            reason = "merge" if applied.merged else "profile"
            self.ledger.settle(
                lead_id, status.rule_points, result.rule_points(), reason, event.message_id
            )
            return
        half_life = compiled.model.half_life
        new: dict[str, float] = {}
        names = set()
        for i in applied.touched:
            rule = compiled.rules[i]
            names.add(rule.name)
            found = rule_contribution(rule, record.state.hits[i], self.now, half_life)
            if found is not None:
                new[rule.name] = found.points
        if names:
            self.ledger.settle(
                lead_id, status.rule_points, new, "event", event.message_id, only=names
            )


def _final_owners(merges: list[tuple[str, str]]) -> dict[str, str]:
    """Where each merged-away lead ended up, following chains (a → b, then b → c)."""
    owner: dict[str, str] = {}
    for source, target in merges:
        for lead, current in owner.items():
            if current == source:
                owner[lead] = target
        owner[source] = target
    return owner


def _identity_keys(batch: list[ActivityEvent]) -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    for event in batch:
        if event.user_id is not None:
            keys.add((USER, event.user_id))
        if event.anonymous_id is not None:
            keys.add((ANON, event.anonymous_id))
        if event.previous_id is not None:
            keys.add((USER, event.previous_id))
            keys.add((ANON, event.previous_id))
    return keys
