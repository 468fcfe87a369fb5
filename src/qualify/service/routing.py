"""Routing in the store: new MQLs routed in the transaction that qualified them, re-routing,
manual assignment, member availability, and the SLA on assigned MQLs.

The roster (round-robin cursors, open MQLs, availability, account owners) lives in the store
and is read and written inside the writer transaction, so every worker process sees the same
cursor and two workers never hand out the same turn.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from qualify.core.activity import format_time
from qualify.core.leadbook import LeadBook, LeadRecord
from qualify.core.lifecycle import Stage
from qualify.core.routing import Decision, Roster, Router, RoutingInput, Seat
from qualify.core.scoring import CompiledModel
from qualify.errors import QualifyError
from qualify.model.scoring_model import ScoringModel
from qualify.service.webhooks import Outbox, emit_routed, lead_snapshot
from qualify.store import repository as repo
from qualify.store.database import writing
from qualify.store.tables import accounts, leads, members, roster_seats, routings, sla_breaches
from qualify.store.versions import active_version

__all__ = [
    "Routing",
    "SlaReport",
    "assign_lead",
    "check_sla",
    "reroute_lead",
    "route_pending",
    "routing_input",
    "set_available",
]

Clock = Callable[[], float]


def routing_input(
    book: LeadBook, record: LeadRecord, status: repo.LeadStatus, now: float
) -> RoutingInput:
    return RoutingInput(
        record.lead_id,
        book.profile(record, now),
        status.score,
        status.fit,
        status.engagement,
        status.tier,
        status.grade,
        record.source,
        record.account_id,
    )


def load_roster(conn: Connection, account_ids: Iterable[str]) -> Roster:
    """The roster as the store has it now (inside the writer transaction)."""
    roster = Roster()
    for team, member, last, assigned in conn.execute(
        select(
            roster_seats.c.team, roster_seats.c.member, roster_seats.c.last, roster_seats.c.assigned
        )
    ):
        roster.seats.setdefault(team, {})[member] = Seat(last, assigned)
    open_query = (
        select(leads.c.owner, func.count())
        .where(leads.c.stage == str(Stage.MQL), leads.c.owner.is_not(None))
        .group_by(leads.c.owner)
    )
    roster.open_mqls = {owner: count for owner, count in conn.execute(open_query)}
    roster.unavailable = set(
        conn.execute(select(members.c.name).where(members.c.available.is_(False))).scalars()
    )
    wanted = sorted(set(account_ids))
    for part in repo.chunks(wanted):
        query = select(accounts.c.id, accounts.c.owner).where(
            accounts.c.id.in_(part), accounts.c.owner.is_not(None)
        )
        roster.account_owners.update({a: o for a, o in conn.execute(query)})
    return roster


def save_roster(conn: Connection, roster: Roster) -> None:
    """Write the seats and account owners that decisions changed."""
    for team, member in sorted(roster.changed_seats):
        seat = roster.seats[team][member]
        values = {"last": seat.last, "assigned": seat.assigned}
        updated = conn.execute(
            roster_seats.update()
            .where(roster_seats.c.team == team, roster_seats.c.member == member)
            .values(values)
        )
        if updated.rowcount == 0:
            conn.execute(roster_seats.insert().values(team=team, member=member, **values))
    for account_id in sorted(roster.changed_owners):
        conn.execute(
            accounts.update()
            .where(accounts.c.id == account_id)
            .values(
                owner=roster.account_owners[account_id],
                written_generation=repo.written_generation(conn),
            )
        )
    roster.changed_seats.clear()
    roster.changed_owners.clear()


@dataclass(slots=True)
class Routing:
    """Routes leads within one writer transaction and collects what to write."""

    router: Router
    roster: Roster
    accept_within: float | None
    version_id: int | None
    rows: list[dict[str, Any]]
    outbox: Outbox
    owns_outbox: bool  # write the outbox too (else the caller writes it with its own rows)

    @classmethod
    def start(
        cls,
        conn: Connection,
        model: ScoringModel,
        version_id: int | None,
        account_ids: Iterable[str],
        outbox: Outbox | None = None,
    ) -> Routing:
        return cls(
            Router(model.routing),
            load_roster(conn, account_ids),
            model.lifecycle.accept_within,
            version_id,
            [],
            outbox if outbox is not None else Outbox.start(conn),
            outbox is None,
        )

    def route(
        self,
        lead: RoutingInput,
        status: repo.LeadStatus,
        now: float,
        *,
        actor: str = "system",
        exclude: frozenset[str] = frozenset(),
        note: str = "",
    ) -> Decision:
        decision = self.router.route(lead, self.roster, now, exclude=exclude)
        self.take(decision, status, actor=actor, note=note)
        return decision

    def take(
        self, decision: Decision, status: repo.LeadStatus, *, actor: str, note: str = ""
    ) -> None:
        """Record a decision: on the lead's status, in the roster, as a routing row."""
        if decision.kind == "unrouted" and status.routing == "unrouted" and actor == "system":
            status.routed_at = decision.at  # tried again: not recorded again at every try
            return
        if status.owner is not None and decision.member != status.owner:
            self.roster.release(status.owner)
        self.roster.record(decision)
        status.routed_at = decision.at
        status.owner = decision.member
        status.team = decision.team
        status.nurture_campaign = decision.campaign
        status.routing = decision.kind
        status.sla_breached_at = None
        assigned = decision.kind == "assign" and status.stage is Stage.MQL
        status.sla_due_at = (
            decision.at + self.accept_within if assigned and self.accept_within else None
        )
        reason = f"{note}: {decision.reason}" if note else decision.reason
        if self.outbox.subscriptions:
            emit_routed(self.outbox, decision, lead_snapshot(decision.lead_id, status), actor)
        self.rows.append(
            {
                "lead_id": decision.lead_id,
                "kind": decision.kind,
                "rule": decision.rule,
                "team": decision.team,
                "member": decision.member,
                "campaign": decision.campaign,
                "strategy": decision.strategy,
                "reason": reason,
                "skipped": list(decision.skipped),
                "actor": actor,
                "at": decision.at,
                "model_version_id": self.version_id,
            }
        )

    def write(self, conn: Connection, owners: dict[str, str] | None = None) -> None:
        """The routing rows (repointed to the leads merges left) and the roster."""
        if owners:
            for row in self.rows:
                row["lead_id"] = owners.get(row["lead_id"], row["lead_id"])
        repo.insert_rows(conn, routings, self.rows)
        self.rows = []
        save_roster(conn, self.roster)
        if self.owns_outbox:
            self.outbox.write(conn, owners)


def _book_for(conn: Connection, model: ScoringModel, stored: Iterable[repo.StoredLead]) -> LeadBook:
    """The leads with their accounts, as routing rules see them (profiles)."""
    book = LeadBook(CompiledModel(model))
    book.leads = {s.record.lead_id: s.record for s in stored}
    account_ids = {r.account_id for r in book.leads.values() if r.account_id}
    book.accounts = repo.load_accounts(conn, account_ids)
    return book


def reroute_lead(engine: Engine, lead_id: str, *, actor: str, clock: Clock = time.time) -> Decision:
    """Route an MQL again by the active model's rules (its owner may get it again)."""
    now = clock()
    with writing(engine) as conn:
        version_id, model = active_version(conn)
        stored = repo.lock_lead(conn, lead_id, len(model.engagement))
        status = stored.status
        if status.stage is not Stage.MQL:
            raise QualifyError(
                f"lead {stored.record.lead_id} is {status.stage}: only MQLs are routed"
            )
        book = _book_for(conn, model, [stored])
        routing = Routing.start(conn, model, version_id, book.accounts)
        lead = routing_input(book, stored.record, status, now)
        decision = routing.route(lead, status, now, actor=actor, note="re-routed")
        routing.write(conn)
        repo.save_routing_columns(conn, stored.record.lead_id, status)
    return decision


def assign_lead(
    engine: Engine,
    lead_id: str,
    member: str,
    *,
    actor: str,
    team: str | None = None,
    clock: Clock = time.time,
) -> Decision:
    """Give a lead to a member by hand (recorded with who did it)."""
    now = clock()
    member = member.strip()
    if not member:
        raise QualifyError("name the member to assign the lead to")
    with writing(engine) as conn:
        version_id, model = active_version(conn)
        stored = repo.lock_lead(conn, lead_id, len(model.engagement))
        status = stored.status
        if status.stage in (Stage.CUSTOMER, Stage.DISQUALIFIED):
            raise QualifyError(f"lead {stored.record.lead_id} is {status.stage}: it needs no owner")
        routing = Routing.start(conn, model, version_id, [])
        unavailable = " (marked unavailable)" if member in routing.roster.unavailable else ""
        teams = teams_of(model, member)
        if team is None:  # the member's team: the lead's, or the only one the model has
            team = status.team if status.team in teams else (teams[0] if len(teams) == 1 else None)
        decision = Decision(
            stored.record.lead_id,
            "assign",
            now,
            team=team,
            member=member,
            strategy="manual",
            reason=f"assigned to {member} by {actor}{unavailable}",
        )
        routing.take(decision, status, actor=actor)
        routing.write(conn)
        repo.save_routing_columns(conn, stored.record.lead_id, status)
    return decision


def set_available(
    engine: Engine,
    member: str,
    available: bool,
    *,
    actor: str,
    note: str = "",
    clock: Clock = time.time,
) -> None:
    """Mark a member available or not (out of office): routing skips unavailable members."""
    member = member.strip()
    if not member:
        raise QualifyError("name the member")
    now = clock()
    with writing(engine) as conn:
        values = {"available": available, "note": note, "updated_at": now, "updated_by": actor}
        updated = conn.execute(members.update().where(members.c.name == member).values(values))
        if updated.rowcount == 0:
            conn.execute(members.insert().values(name=member, **values))


def record_late_answer(
    conn: Connection,
    lead_id: str,
    status: repo.LeadStatus,
    now: float,
    version_id: int | None,
    outbox: Outbox,
) -> None:
    """A sales action on an MQL whose SLA ran out before the scheduler saw it: the breach
    is recorded all the same (once), so SLA reports miss none. The caller writes `outbox`."""
    if status.sla_due_at is None or status.sla_breached_at is not None:
        return
    if status.stage is not Stage.MQL or status.sla_due_at >= now:
        return
    row = {
        "lead_id": lead_id,
        "member": status.owner,
        "due_at": status.sla_due_at,
        "breached_at": now,
        "model_version_id": version_id,
    }
    repo.insert_rows(conn, sla_breaches, [row])
    if outbox.subscriptions:
        data = {
            "member": status.owner,
            "due_at": format_time(status.sla_due_at),
            "breached_at": format_time(now),
            "on_breach": "none",
            "answered_late": True,
        }
        outbox.emit("lead.sla_breached", lead_snapshot(lead_id, status), data, now)


def teams_of(model: ScoringModel, member: str) -> list[str]:
    """The teams whose routing rules list the member, in rule order."""
    teams = [
        rule.assign.team
        for rule in model.routing
        if rule.assign is not None and any(m.name == member for m in rule.assign.members)
    ]
    return list(dict.fromkeys(teams))


def list_members(engine: Engine) -> list[dict[str, Any]]:
    """Every member the active model names, marked by hand, or holding open MQLs, with
    availability, capacity and open MQLs."""
    with engine.connect() as conn:
        _, model = active_version(conn)
        roster = load_roster(conn, [])
        marked = {row.name: row for row in conn.execute(select(members))}
    names: dict[str, set[str]] = {}
    for rule in model.routing:
        if rule.assign is not None:
            for m in rule.assign.members:
                names.setdefault(m.name, set()).add(rule.assign.team)
    limits: dict[str, int] = {}
    for rule in model.routing:
        if rule.assign is not None:
            for m in rule.assign.members:
                if m.capacity is not None:
                    limits[m.name] = min(limits.get(m.name, m.capacity), m.capacity)
    for name in (*marked, *roster.open_mqls):
        names.setdefault(name, set())
    out = []
    for name in sorted(names):
        row = marked.get(name)
        out.append(
            {
                "member": name,
                "teams": sorted(names[name]),
                "available": row.available if row is not None else True,
                "note": row.note if row is not None else "",
                "open_mqls": roster.open_mqls.get(name, 0),
                "capacity": limits.get(name),
                "in_model": bool(names[name]),
            }
        )
    return out


def route_pending(engine: Engine, *, clock: Clock = time.time, limit: int = 200) -> int:
    """Route MQLs that no rule could take before (members were away or full), and MQLs
    never routed (qualified before routing existed). Returns how many found a place."""
    now = clock()
    with writing(engine) as conn:
        version_id, model = active_version(conn)
        if not model.routing:
            return 0
        waiting = (leads.c.routing == "unrouted") | leads.c.routing.is_(None)
        ids = list(  # the least recently tried first, so every waiting lead gets its turn
            conn.execute(
                select(leads.c.id)
                .where(leads.c.stage == str(Stage.MQL), waiting)
                .order_by(func.coalesce(leads.c.routed_at, 0.0), leads.c.id)
                .limit(limit)
            ).scalars()
        )
        if not ids:
            return 0
        stored = repo.load_leads(conn, ids, len(model.engagement), lenient=True)
        book = _book_for(conn, model, stored.values())
        routing = Routing.start(conn, model, version_id, book.accounts)
        placed = 0
        for lead_id in ids:
            item = stored[lead_id]
            decision = routing.route(
                routing_input(book, item.record, item.status, now), item.status, now
            )
            if decision.kind != "unrouted":
                placed += 1
            repo.save_routing_columns(conn, lead_id, item.status)
        routing.write(conn)
    return placed


@dataclass(slots=True)
class SlaReport:
    breached: int = 0
    reassigned: int = 0


def check_sla(engine: Engine, *, clock: Clock = time.time) -> SlaReport:
    """Record every assigned MQL whose `accept_within` ran out (once per assignment) and,
    with `on_breach: reassign`, route it to someone else."""
    now = clock()
    report = SlaReport()
    with writing(engine) as conn:
        version_id, model = active_version(conn)
        due = list(
            conn.execute(
                select(leads.c.id)
                .where(
                    leads.c.stage == str(Stage.MQL),
                    leads.c.sla_due_at < now,
                    leads.c.sla_breached_at.is_(None),
                )
                .order_by(leads.c.sla_due_at, leads.c.id)
            ).scalars()
        )
        if not due:
            return report
        stored = repo.load_leads(conn, due, len(model.engagement), lenient=True)
        reassign = model.lifecycle.on_breach == "reassign"
        outbox = Outbox.start(conn)
        routing = None
        book = None
        if reassign:
            book = _book_for(conn, model, stored.values())
            routing = Routing.start(conn, model, version_id, book.accounts, outbox)
        breaches = []
        for lead_id in due:
            status = stored[lead_id].status
            breaches.append(
                {
                    "lead_id": lead_id,
                    "member": status.owner,
                    "due_at": status.sla_due_at,
                    "breached_at": now,
                    "model_version_id": version_id,
                }
            )
            report.breached += 1
            status.sla_breached_at = now
            if outbox.subscriptions:
                data = {
                    "member": status.owner,
                    "due_at": format_time(status.sla_due_at or now),
                    "breached_at": format_time(now),
                    "on_breach": model.lifecycle.on_breach,
                    "answered_late": False,
                }
                outbox.emit("lead.sla_breached", lead_snapshot(lead_id, status), data, now)
            if routing is not None and book is not None:
                late = status.owner
                lead = routing_input(book, stored[lead_id].record, status, now)
                decision = routing.route(
                    lead,
                    status,
                    now,
                    exclude=frozenset({late}) if late else frozenset(),
                    note=f"SLA breached by {late}",
                )
                if decision.kind == "assign":
                    report.reassigned += 1
                else:
                    status.sla_breached_at = now  # nobody else could take it: stays breached
            repo.save_routing_columns(conn, lead_id, status)
        repo.insert_rows(conn, sla_breaches, breaches)
        if routing is not None:
            routing.write(conn)
        outbox.write(conn)
    return report
