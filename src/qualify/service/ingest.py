"""Ingestion into the store: messages → events, identities, lead state, ledger, stages.

Messages are taken in batches; each batch is one transaction, so whatever is acknowledged is
durable and consistent (events, scores, ledger and stage changes commit together). Per
batch the leads it touches are loaded once, changed in memory by the same `LeadBook` the
stateless scorer uses, and written back with a few bulk statements.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any

from sqlalchemy import Connection, Engine

from qualify.core.activity import ActivityEvent
from qualify.core.identity import ANON, USER, IdentityGraph
from qualify.core.leadbook import Applied, LeadBook, LeadRecord
from qualify.core.lifecycle import Stage
from qualify.core.scoring import (
    CompiledModel,
    ValuesAt,
    rule_contribution,
)
from qualify.service.progress import Ledger, apply_score, qualify_record
from qualify.service.routing import Routing, routing_input
from qualify.service.webhooks import Outbox, active_subscriptions, emit_lead_changes
from qualify.store import repository as repo
from qualify.store.database import GENERATION, writing
from qualify.store.tables import events, ledger, transitions
from qualify.store.versions import active_version, active_version_id

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


class Ingestor:
    """Ingests messages with the store's active model. `clock` is injected for tests.

    `batch_size` messages make one transaction; inside it they are taken `step_size` at a
    time (loaded, applied, their event and ledger rows written), so a large transaction —
    which writes each touched lead once, however many of its messages it holds — needs
    memory for one step's messages only.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock = time.time,
        batch_size: int = 2000,
        step_size: int = 10_000,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.batch_size = batch_size
        self.step_size = step_size
        self.warm: _Warm | None = None
        self.committed: int | None = None  # the write generation of our last commit
        self.subscriptions: list[dict[str, Any]] = []
        with engine.connect() as conn:
            self.version_id, model = active_version(conn)
        self.compiled = CompiledModel(model)

    def sync(self, conn: Connection, generation: int | None) -> None:
        """Score with the model active now and queue for the webhooks subscribed now:
        another process may have changed either (the caller holds the write lock, so
        neither changes until the commit). When no one wrote since our last commit, both
        are as they were, and a single message's transaction skips two queries."""
        if generation is not None and self.committed == generation - 1:
            return
        if active_version_id(conn) != self.version_id:
            self.version_id, model = active_version(conn)
            self.compiled = CompiledModel(model)
        self.subscriptions = active_subscriptions(conn)

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
        iterator = iter(messages)
        while True:
            with writing(self.engine) as conn:
                work = _BatchWork(self, conn, now)
                taken = 0
                while taken < self.batch_size:
                    step = list(islice(iterator, min(self.step_size, self.batch_size - taken)))
                    if not step:
                        break
                    work.step(step)
                    taken += len(step)
                    if progress is not None:
                        progress(len(step))
                report.add(work.finish())
            self._keep(work)
            if taken < self.batch_size:
                return report

    def ingest_batch(self, batch: list[ActivityEvent], *, now: float | None = None) -> IngestReport:
        """One transaction: everything in the batch is stored, scored and staged, or nothing."""
        moment = self.clock() if now is None else now
        with writing(self.engine) as conn:
            work = _BatchWork(self, conn, moment)
            for start in range(0, len(batch), self.step_size):
                work.step(batch[start : start + self.step_size])
            report = work.finish()
        self._keep(work)
        return report

    def _take_warm(self, conn: Connection, generation: int | None) -> _Warm | None:
        """What the last transaction left in memory, brought up to date: when another
        process wrote since, the rows it wrote are forgotten (`_Warm.forget_written`), so
        the leads, identities and accounts kept are exactly what the store holds."""
        warm, self.warm = self.warm, None
        if warm is None or generation is None or warm.version_id != self.version_id:
            return None
        if warm.generation != generation - 1:
            warm.forget_written(conn)
        return warm

    def _keep(self, work: _BatchWork) -> None:
        """After a commit: keep what the transaction loaded and wrote for the next one."""
        book = work.book
        # in place: copying the sets of every lead and account held made each transaction,
        # even a single message's, cost time in proportion to all the leads held
        work.existing_leads.difference_update(book.removed)
        work.existing_leads.update(work.earliest)
        work.existing_accounts.update(work.groups)
        book.removed.clear()
        work.graph.loaded |= work.saved_keys
        self.committed = work.generation
        if work.generation is None or len(book.leads) > WARM_LIMIT:
            return
        self.warm = _Warm(
            generation=work.generation,
            version_id=work.version_id,
            book=book,
            statuses=work.statuses,
            existing_leads=work.existing_leads,
            existing_accounts=work.existing_accounts,
            looked_up=work.looked_up,
            accounts_looked_up=work.accounts_looked_up,
            saved=work.saved,
        )


# Leads a process keeps in memory between transactions, at most (then it reads them again).
WARM_LIMIT = 200_000


@dataclass(slots=True)
class _Warm:
    generation: int
    version_id: int
    book: LeadBook
    statuses: dict[str, repo.LeadStatus]
    existing_leads: set[str]
    existing_accounts: set[str]
    looked_up: set[tuple[str, str]]
    accounts_looked_up: set[str]
    saved: dict[str, repo.SavedLead]

    def forget_written(self, conn: Connection) -> None:
        """Another process wrote since our last commit (several server workers on one
        store): forget the leads and identity keys it wrote and read anew the accounts it
        wrote, rather than everything — each worker's commit would otherwise empty the
        other's memory. A lead it merged away keeps its record here, but its keys were
        repointed (written), so no message leads to it any more."""
        written = repo.written_since(conn, self.generation)
        book, graph = self.book, self.book.graph
        keys = set(written.identities)
        for lead_id in written.leads:
            if book.leads.pop(lead_id, None) is not None:
                # its keys are looked up again, so that a message naming them reads it anew
                keys |= graph.members.get(lead_id, set())
            self.statuses.pop(lead_id, None)
            self.saved.pop(lead_id, None)
        for account_id, account in written.accounts.items():
            if account_id in self.accounts_looked_up:  # held here, or looked up and missed
                book.accounts[account_id] = account
                self.existing_accounts.add(account_id)
        graph.forget(keys)
        self.looked_up -= keys


class _BatchWork:
    """One transaction. Each step loads what its messages need that is not loaded yet,
    applies them and writes their event and ledger rows; `finish` scores every touched
    lead once as of the batch's clock and writes leads, accounts, identities and stages."""

    def __init__(self, ingestor: Ingestor, conn: Connection, now: float) -> None:
        self.generation: int | None = conn.info.get(GENERATION)
        ingestor.sync(conn, self.generation)
        self.compiled = ingestor.compiled
        self.version_id = ingestor.version_id
        self.conn = conn
        self.now = now
        self.ledger = Ledger(ingestor.version_id, now)
        self.report = IngestReport()
        warm = ingestor._take_warm(conn, self.generation)
        if warm is not None:
            self.book, self.statuses = warm.book, warm.statuses
            self.existing_leads, self.existing_accounts = (
                warm.existing_leads,
                warm.existing_accounts,
            )
            self.looked_up, self.accounts_looked_up = warm.looked_up, warm.accounts_looked_up
            self.saved = warm.saved
        else:
            self.book = LeadBook(self.compiled, IdentityGraph())
            self.statuses = {}
            self.existing_leads = set()
            self.existing_accounts = set()
            self.looked_up = set()  # identity keys read (or missed)
            self.accounts_looked_up = set()
            self.saved: dict[str, repo.SavedLead] = {}  # the stored columns of leads read
        self.graph = self.book.graph
        self.saved_keys: set[tuple[str, str]] = set()
        self.txn_keys: set[tuple[str, str]] = (
            set()
        )  # identity keys this transaction's messages name
        self.seen: set[str] = set()  # messageIds taken in this transaction
        self.earliest: dict[str, float] = {}  # per touched lead, its earliest new message
        self.merges: list[tuple[str, str]] = []
        self.event_rows: list[dict[str, Any]] = []
        self.groups: set[str] = set()  # accounts whose traits a message set
        # accounts whose traits a message changed: (the earliest such time, the last such
        # message applied, whose messageId the members' ledger rows name)
        self.regrouped: dict[str, tuple[float, str]] = {}
        self.fit_rules = {rule.name for rule in self.compiled.model.fit}
        self.values = ValuesAt(self.compiled, now)
        self.routing: Routing | None = None
        self.outbox = Outbox(ingestor.subscriptions)

    def step(self, messages: list[ActivityEvent]) -> None:
        self.report.received += len(messages)
        fresh = self._fresh(messages)
        if fresh:
            self._load(fresh)
            self._apply(fresh)
            self._write_rows()
            self.report.ingested += len(fresh)

    def finish(self) -> IngestReport:
        report = self.report
        if self.regrouped:
            self._regroup()
        if self.earliest:
            changes = self._score_touched()
            self._write_rows()
            self._write_leads(changes)
            report.leads_touched = len(self.earliest)
            report.new_mqls = len(changes)
        return report

    def _load(self, fresh: list[ActivityEvent]) -> None:
        """What these messages touch that this transaction has not read yet: identities,
        then their leads and accounts."""
        conn, book = self.conn, self.book
        keys = _identity_keys(fresh)
        self.txn_keys |= keys
        keys -= self.looked_up
        self.looked_up |= keys
        found = repo.load_identities(conn, keys)
        if self.merges:  # a stored key of a lead merged away in this transaction
            owner = _final_owners(self.merges)
            found = {key: owner.get(lead, lead) for key, lead in found.items()}
        self.graph.load(found)
        wanted = {lead for lead in found.values() if lead not in book.leads}
        self._load_leads(wanted, {e.group_id for e in fresh if e.group_id is not None})

    def _load_leads(self, wanted: set[str], account_ids: set[str]) -> None:
        """These leads from the store, with their accounts and those named."""
        conn, book = self.conn, self.book
        stored = repo.load_leads(conn, wanted, len(self.compiled.rules), lenient=True)
        for lead_id, lead in stored.items():
            book.leads[lead_id] = lead.record
            self.statuses[lead_id] = lead.status
            self.existing_leads.add(lead_id)
            self.saved[lead_id] = repo.saved_lead(lead)
        account_ids |= {s.record.account_id for s in stored.values() if s.record.account_id}
        account_ids -= self.accounts_looked_up
        self.accounts_looked_up |= account_ids
        accounts = repo.load_accounts(conn, account_ids)
        book.accounts.update(accounts)
        self.existing_accounts |= set(accounts)
        stale = [i for i, s in stored.items() if s.status.state_version_id != self.version_id]
        if stale:
            self._rebuild(stale)

    def _rebuild(self, stale: list[str]) -> None:
        """Leads whose rule state was not built for the active model get it rebuilt from
        their stored events. Those last scored by another model (an activation still
        rescoring, or one that stopped half-way) have the change of points booked to the
        model, before this transaction's messages count; those a batch engine scored with
        this model (a write-back, which stores no state) go on from their stored points."""
        compiled, book = self.compiled, self.book
        repo.rebuild_states(self.conn, compiled, book.leads, stale)
        for lead_id in stale:
            record, status = book.leads[lead_id], self.statuses[lead_id]
            if status.model_version_id == self.version_id:
                continue
            result = book.score(record, self.now)
            self.ledger.settle(lead_id, status.rule_points, result.rule_points(), "model")

    def _apply(self, fresh: list[ActivityEvent]) -> None:
        """Each message changes its lead in memory and leaves an event row and ledger rows."""
        for event in fresh:
            applied = self.book.apply(event)
            assert applied is not None  # the batch was deduplicated above
            lead_id = applied.lead_id
            for source, target in applied.merged:
                self.merges.append((source, target))
                self._merge_status(source, target)
                self.values.forget(source)
                self.values.forget(target)
            status = self.statuses.get(lead_id)
            if status is None:
                status = repo.LeadStatus(stage_at=event.timestamp, created_at=self.now)
                self.statuses[lead_id] = status
            self.earliest[lead_id] = min(
                self.earliest.get(lead_id, event.timestamp), event.timestamp
            )
            if event.group_id is not None:
                self.groups.add(event.group_id)
                if applied.account_changed:
                    known = self.regrouped.get(event.group_id)
                    first = event.timestamp if known is None else min(known[0], event.timestamp)
                    self.regrouped[event.group_id] = (first, event.message_id)
            self.event_rows.append(repo.event_row(event, lead_id, self.now))
            self._settle_event(lead_id, status, event, applied)

    def _regroup(self) -> None:
        """A message changed an account's traits, so the profile of every lead linked to it
        changed, not only the sender's: each is scored with the rest — its fit points
        booked to that message, and qualified from that moment if its criteria now hold
        — rather than at its own next message. Members are the stored leads linked to
        the account, and those this transaction linked; each is judged by the link it has
        in memory, the latest."""
        book, regrouped = self.book, self.regrouped
        # an account created in this transaction has no stored member yet
        stored = [a for a in regrouped if a in self.existing_accounts]
        members = repo.account_members(self.conn, stored) if stored else set()
        members |= {i for i in self.earliest if book.leads[i].account_id in regrouped}
        members -= book.removed
        self._load_leads({i for i in members if i not in book.leads}, set())
        for lead_id in sorted(members):
            record = book.leads.get(lead_id)
            if record is None or record.account_id not in regrouped:
                continue
            moment, message_id = regrouped[record.account_id]
            self._settle_fit(lead_id, self.statuses[lead_id], message_id)
            self.earliest[lead_id] = min(self.earliest.get(lead_id, moment), moment)

    def _settle_fit(self, lead_id: str, status: repo.LeadStatus, message_id: str) -> None:
        """Ledger rows for a change of the lead's profile, booked to the message that made
        it (only fit rules read the profile)."""
        _, fit = self.book.fit(self.book.leads[lead_id], self.now)
        new_fit = {c.rule: c.points for c in fit}
        self.ledger.settle(
            lead_id, status.rule_points, new_fit, "profile", message_id, only=self.fit_rules
        )

    def _score_touched(self) -> list[dict[str, Any]]:
        """Score every touched lead as of the batch's clock; qualify those whose criteria
        came to hold. Returns the stage changes to record."""
        compiled, book = self.compiled, self.book
        changes = []
        qualified = []
        outbox = self.outbox
        for lead_id, since in self.earliest.items():
            record, status = book.leads[lead_id], self.statuses[lead_id]
            result = book.score(record, self.now)
            self.ledger.settle(lead_id, status.rule_points, result.rule_points(), "time")
            before = (status.score, status.pql)
            apply_score(status, result, self.version_id, self.now)
            change = qualify_record(compiled, book, record, status, since=since, now=self.now)
            if change is not None:
                changes.append(repo.transition_row(change, self.version_id))
                qualified.append((record, status))
            if outbox.subscriptions:
                emit_lead_changes(outbox, lead_id, status, before, change, self.now)
        if qualified and compiled.model.routing:
            self._route(qualified)
        return changes

    def _route(self, qualified: list[tuple[LeadRecord, repo.LeadStatus]]) -> None:
        """Route the new MQLs in this transaction (acknowledged means routed too), by their
        profile and score at the batch's clock."""
        accounts = {record.account_id for record, _ in qualified if record.account_id}
        self.routing = Routing.start(
            self.conn, self.compiled.model, self.version_id, accounts, self.outbox
        )
        for record, status in qualified:
            lead = routing_input(self.book, record, status, self.now)
            self.routing.route(lead, status, self.now)

    def _write_rows(self) -> None:
        """Event and ledger rows so far, with the lead ids the merges so far left. Rows of a
        lead merged away later in the transaction are repointed by `merge_leads`."""
        if self.merges:
            owner = _final_owners(self.merges)
            for rows in (self.event_rows, self.ledger.rows):
                for row in rows:
                    row["lead_id"] = owner.get(row["lead_id"], row["lead_id"])
        repo.insert_rows(self.conn, events, self.event_rows)
        repo.insert_rows(self.conn, ledger, self.ledger.rows)
        self.event_rows = []
        self.ledger.rows = []

    def _write_leads(self, changes: list[dict[str, Any]]) -> None:
        """Stages, merges, identities, leads and accounts: a few bulk statements."""
        conn = self.conn
        if self.merges:
            owner = _final_owners(self.merges)
            for row in changes:
                row["lead_id"] = owner.get(row["lead_id"], row["lead_id"])
        repo.insert_rows(conn, transitions, changes)
        repo.merge_leads(conn, self.merges)
        graph = self.graph
        rows = []
        for kind, value in sorted(self.txn_keys - graph.loaded):
            lead = graph.lead_of(kind, value)
            if lead is not None:  # a key the messages named, now claimed: new in the store
                rows.append((kind, value, lead))
        self.saved_keys = {(kind, value) for kind, value, _ in rows}
        repo.save_identities(conn, rows)
        touched = [repo.StoredLead(self.book.leads[i], self.statuses[i]) for i in self.earliest]
        removed, held = self.book.removed, self.existing_leads
        stored = {i for i in self.earliest if i in held and i not in removed}
        repo.save_leads(conn, touched, stored, self.saved)
        dirty = [self.book.accounts[a] for a in self.groups]
        repo.save_accounts(conn, dirty, self.existing_accounts, self.now)
        owners = _final_owners(self.merges) if self.merges else None
        if self.routing is not None:  # after the accounts: an assignment may set an owner
            self.routing.write(conn, owners)
        self.outbox.write(conn, owners)

    def _fresh(self, batch: list[ActivityEvent]) -> list[ActivityEvent]:
        """The messages not seen before (in this transaction or in the store): idempotence."""
        seen, report = self.seen, self.report
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
            for name in repo.ROUTING_COLUMNS:  # its owner and SLA come with its stage
                setattr(kept, name, getattr(gone, name))
        kept.created_at = min(kept.created_at, gone.created_at)

    def _settle_event(
        self, lead_id: str, status: repo.LeadStatus, event: ActivityEvent, applied: Applied
    ) -> None:
        """Ledger rows for what this one message changed, valued at the batch's clock."""
        compiled, book = self.compiled, self.book
        record = book.leads[lead_id]
        if applied.merged:
            result = book.score(record, self.now)
            self.ledger.settle(
                lead_id, status.rule_points, result.rule_points(), "merge", event.message_id
            )
            return
        if applied.profile_changed:
            self._settle_fit(lead_id, status, event.message_id)
            return
        half_life = compiled.model.half_life
        new: dict[str, float] = {}
        names = set()
        for i in applied.touched:
            rule = compiled.rules[i]
            names.add(rule.name)
            hits = record.state.hits[i]
            points = self.values.points(lead_id, i, hits, event.timestamp)
            if points is not None:
                new[rule.name] = points
                continue
            found = rule_contribution(rule, hits, self.now, half_life)
            if found is not None:
                new[rule.name] = found.points
        if names:
            self.ledger.settle(
                lead_id, status.rule_points, new, "event", event.message_id, only=names
            )


def _final_owners(merges: list[tuple[str, str]]) -> dict[str, str]:
    """Where each merged-away lead ended up, following chains (a → b, then b → c).

    A lead merged away never comes back (its ids point to the survivor), so chains end."""
    into = dict(merges)
    owner: dict[str, str] = {}
    for source in into:
        chain = [source]
        target = into[source]
        while target in into and target not in owner and len(chain) <= len(into):
            chain.append(target)
            target = into[target]
        final = owner.get(target, target)
        for lead in chain:
            owner[lead] = final
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
