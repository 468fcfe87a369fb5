"""Routing: which nurture campaign or which rep an MQL goes to (pure: no I/O, no clock).

The model's `routing` rules are tried in order; the first whose `when` holds and that can
take the lead routes it. `when` sees the lead's profile with the computed fields `score`,
`fit`, `engagement`, `tier`, `grade` and `source` on top (a trait of the same name is hidden).

An `assign` rule picks a member of its team:
- `account_owner: true` first: a lead whose account has an owner goes to that owner (and the
  first lead of an account routed by such a rule makes its assignee the account's owner);
- `round_robin`: the member assigned least recently (never assigned first, then in the order
  the model lists them), so over many leads the counts differ by at most one;
- `weighted`: the member whose share of the team's leads is furthest below their weight —
  deterministic, so 300 leads over weights 2:1 give exactly 200 and 100;
- `capacity`: like round robin, among members below their `capacity` of open MQLs.
Members marked unavailable are skipped, and so is anyone at their `capacity` under any
strategy. A rule none of whose members can take the lead lets the next rule try; a lead no
rule can take is `unrouted`, with the reasons, and is routed again later.

The roster (who was assigned when, open MQLs, availability, account owners) is state the
store loads and saves; `Roster.record` updates it, so that routing many leads in one
transaction is fair too. Nothing here is random and nothing reads a clock: the caller
passes `now`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qualify.core.predicates import Test, compile_predicate
from qualify.model.routing import Assignment, Member, RoutingRule

__all__ = ["Decision", "Roster", "Router", "RoutingInput", "Seat"]


@dataclass(frozen=True, slots=True)
class RoutingInput:
    """What routing rules may look at."""

    lead_id: str
    profile: Mapping[str, Any]
    score: float
    fit: float
    engagement: float
    tier: str | None
    grade: str | None
    source: str | None
    account_id: str | None = None

    def data(self) -> dict[str, Any]:
        return {
            **self.profile,
            "score": self.score,
            "fit": self.fit,
            "engagement": self.engagement,
            "tier": self.tier,
            "grade": self.grade,
            "source": self.source,
        }


@dataclass(slots=True)
class Seat:
    """One member's place in one team: the team's assignment number that last went to
    them (0: never), and how many of the team's leads they have had."""

    last: int = 0
    assigned: int = 0


@dataclass(slots=True)
class Roster:
    """Who can take leads now, and who had the last ones."""

    seats: dict[str, dict[str, Seat]] = field(default_factory=dict)  # team → member → seat
    open_mqls: dict[str, int] = field(default_factory=dict)  # member → MQLs not yet worked
    unavailable: set[str] = field(default_factory=set)
    account_owners: dict[str, str] = field(default_factory=dict)  # account id → member
    changed_seats: set[tuple[str, str]] = field(default_factory=set)  # (team, member)
    changed_owners: set[str] = field(default_factory=set)  # account ids

    def seat(self, team: str, member: str) -> Seat:
        return self.seats.setdefault(team, {}).setdefault(member, Seat())

    def record(self, decision: Decision) -> None:
        """Count an assignment, so the next decision sees it."""
        member = decision.member
        if decision.kind != "assign" or member is None:
            return
        if decision.team is not None:
            team_seats = self.seats.setdefault(decision.team, {})
            seat = team_seats.setdefault(member, Seat())
            seat.last = max((s.last for s in team_seats.values()), default=0) + 1
            seat.assigned += 1
            self.changed_seats.add((decision.team, member))
        self.open_mqls[member] = self.open_mqls.get(member, 0) + 1
        if decision.owner_of is not None:
            self.account_owners[decision.owner_of] = member
            self.changed_owners.add(decision.owner_of)

    def release(self, member: str | None) -> None:
        """A lead of this member's was worked (accepted, rejected) or taken from them."""
        if member is not None and self.open_mqls.get(member, 0) > 0:
            self.open_mqls[member] -= 1


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a lead was routed, and why (recorded on the lead, shown in `explain`)."""

    lead_id: str
    kind: str  # "nurture", "assign" or "unrouted"
    at: float
    rule: str | None = None
    team: str | None = None
    member: str | None = None
    campaign: str | None = None
    strategy: str | None = None  # round_robin, weighted, capacity, account_owner, manual
    reason: str = ""
    skipped: tuple[str, ...] = ()  # members or rules passed over, each with why
    owner_of: str | None = None  # the account this assignment made the member owner of

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rule": self.rule,
            "team": self.team,
            "member": self.member,
            "campaign": self.campaign,
            "strategy": self.strategy,
            "reason": self.reason,
            "skipped": list(self.skipped),
            "at": self.at,
        }


class Router:
    """The model's routing rules, with their `when` predicates compiled once."""

    def __init__(self, rules: Iterable[RoutingRule]) -> None:
        self.rules = tuple(rules)
        self.tests: tuple[Test, ...] = tuple(compile_predicate(r.when) for r in self.rules)

    def route(
        self,
        lead: RoutingInput,
        roster: Roster,
        now: float,
        *,
        exclude: frozenset[str] = frozenset(),
    ) -> Decision:
        """The first rule that holds and can take the lead; `exclude` names members who may
        not have it (the rep whose SLA it breached)."""
        data = lead.data()
        passed: list[str] = []
        for rule, test in zip(self.rules, self.tests, strict=True):
            if not test(data):
                continue
            if rule.nurture is not None:
                return Decision(
                    lead.lead_id,
                    "nurture",
                    now,
                    rule=rule.name,
                    campaign=rule.nurture,
                    reason=f"rule `{rule.name}` holds: nurture campaign {rule.nurture}",
                    skipped=tuple(passed),
                )
            assert rule.assign is not None
            decision = _assign(rule, rule.assign, lead, roster, now, exclude, passed)
            if decision is not None:
                return decision
        if not self.rules:
            reason = "the model has no routing rules"
        elif passed:
            reason = "no rule could take the lead"
        else:
            reason = "no routing rule holds for this lead"
        return Decision(lead.lead_id, "unrouted", now, reason=reason, skipped=tuple(passed))


def _assign(
    rule: RoutingRule,
    assign: Assignment,
    lead: RoutingInput,
    roster: Roster,
    now: float,
    exclude: frozenset[str],
    passed: list[str],
) -> Decision | None:
    """The member of the rule's team who takes the lead, or None (and why, in `passed`)."""
    limits = {m.name: m.capacity for m in assign.members}

    def why_not(name: str) -> str | None:
        if name in exclude:
            return "excluded (breached the SLA)"
        if name in roster.unavailable:
            return "unavailable"
        limit = limits.get(name)
        if limit is not None and roster.open_mqls.get(name, 0) >= limit:
            return f"at capacity ({limit} open MQLs)"
        return None

    skipped: list[str] = []
    if assign.account_owner and lead.account_id is not None:
        owner = roster.account_owners.get(lead.account_id)
        if owner is not None:
            why = why_not(owner)
            if why is None:
                return Decision(
                    lead.lead_id,
                    "assign",
                    now,
                    rule=rule.name,
                    team=assign.team,
                    member=owner,
                    strategy="account_owner",
                    reason=f"rule `{rule.name}`: {owner} owns account {lead.account_id}",
                    skipped=tuple(passed),
                )
            skipped.append(f"{owner} (account owner): {why}")
    team_seats = roster.seats.get(assign.team, {})
    eligible: list[tuple[int, Member]] = []
    for order, member in enumerate(assign.members):
        why = why_not(member.name)
        if why is None:
            eligible.append((order, member))
        else:
            skipped.append(f"{member.name}: {why}")
    if not eligible:
        passed.append(
            f"rule `{rule.name}`: no member of {assign.team} can take it ({'; '.join(skipped)})"
        )
        return None

    def seat(member: Member) -> Seat:
        return team_seats.get(member.name) or Seat()

    if assign.strategy == "weighted":
        total = sum(seat(m).assigned for _, m in eligible) + 1
        weights = sum(m.weight for _, m in eligible)
        # furthest below its share of the leads so far, counting this one
        _, chosen = min(
            eligible,
            key=lambda om: (
                seat(om[1]).assigned - total * om[1].weight / weights,
                seat(om[1]).last,
                om[0],
            ),
        )
        how = f"weighted: {chosen.name} is furthest below their share (weight {chosen.weight:g})"
    else:
        _, chosen = min(eligible, key=lambda om: (seat(om[1]).last, om[0]))
        how = f"{assign.strategy.replace('_', ' ')}: {chosen.name} was assigned least recently"
    owner_of = None
    if (
        assign.account_owner
        and lead.account_id is not None
        and lead.account_id not in roster.account_owners
    ):
        owner_of = lead.account_id
    return Decision(
        lead.lead_id,
        "assign",
        now,
        rule=rule.name,
        team=assign.team,
        member=chosen.name,
        strategy=assign.strategy,
        reason=f"rule `{rule.name}`, {how}",
        skipped=(*passed, *skipped),
        owner_of=owner_of,
    )
