"""The `routing` section, parsed and validated; executing it is the routing engine's job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qualify.model.predicates import Predicate, parse_predicate
from qualify.model.problems import Problems, describe, near_miss

__all__ = ["Assignment", "Member", "RoutingRule", "parse_routing"]

STRATEGIES = ("round_robin", "weighted", "capacity")
ROUTING_KEYS = ("name", "when", "nurture", "assign", "description")
ASSIGN_KEYS = ("team", "strategy", "members", "account_owner")
MEMBER_KEYS = ("name", "weight", "capacity")
COMPUTED_FIELDS = ("score", "fit", "engagement", "tier", "grade", "source")


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    weight: float = 1.0
    capacity: int | None = None


@dataclass(frozen=True, slots=True)
class Assignment:
    team: str
    strategy: str
    members: tuple[Member, ...]
    account_owner: bool = False


@dataclass(frozen=True, slots=True)
class RoutingRule:
    name: str
    when: Predicate | None
    nurture: str | None = None
    assign: Assignment | None = None


def parse_routing(value: Any, problems: Problems) -> tuple[RoutingRule, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.add(("routing",), "`routing` must be an ordered list of rules")
        return ()
    rules = []
    seen: set[str] = set()
    for i, raw in enumerate(value):
        path: tuple[Any, ...] = ("routing", i)
        if not problems.expect_mapping(path, raw, "a routing rule"):
            continue
        problems.check_keys(path, raw, ROUTING_KEYS, "in a routing rule")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            if "name" in raw:
                problems.add(
                    (*path, "name"), f"a routing rule's `name` must be a text, not {describe(name)}"
                )
            else:
                problems.missing(path, "name", "this routing rule has no `name`")
            name = ""
        elif name in seen:
            problems.add((*path, "name"), f"duplicate routing rule name `{name}`")
        seen.add(name)
        when = parse_predicate(raw["when"], (*path, "when"), problems) if "when" in raw else None
        has_nurture, has_assign = "nurture" in raw, "assign" in raw
        if has_nurture == has_assign:
            label = f"routing rule `{name}`" if name else "this routing rule"
            problems.add(
                path,
                f"{label} needs exactly one target: `nurture: CAMPAIGN` or "
                "`assign: {team, strategy, members}`",
            )
        nurture = raw.get("nurture")
        if has_nurture and (not isinstance(nurture, str) or not nurture):
            problems.add((*path, "nurture"), "`nurture` names a campaign")
            nurture = None
        assign = _assignment(raw["assign"], (*path, "assign"), problems) if has_assign else None
        rules.append(RoutingRule(name, when, nurture if has_nurture else None, assign))
    return tuple(rules)


def _assignment(raw: Any, path: tuple[Any, ...], problems: Problems) -> Assignment | None:
    if not problems.expect_mapping(path, raw, "`assign`"):
        return None
    problems.check_keys(path, raw, ASSIGN_KEYS, "in `assign`")
    team = raw.get("team")
    if not isinstance(team, str) or not team:
        problems.add(path, "`assign` needs a `team` name")
        team = ""
    strategy = raw.get("strategy", "round_robin")
    if strategy not in STRATEGIES:
        guess = near_miss(str(strategy).replace("-", "_"), STRATEGIES)
        hint = f"did you mean `{guess}`?" if guess else f"use one of: {', '.join(STRATEGIES)}"
        problems.add((*path, "strategy"), f"unknown strategy `{strategy}`; {hint}")
        strategy = "round_robin"
    members = []
    raw_members = raw.get("members")
    if not isinstance(raw_members, list) or not raw_members:
        problems.add(
            (*path, "members") if "members" in raw else path,
            "`assign` needs a non-empty list of `members`",
        )
        raw_members = []
    for j, member in enumerate(raw_members):
        here = (*path, "members", j)
        if isinstance(member, str) and member:
            members.append(Member(member))
        elif isinstance(member, dict):
            problems.check_keys(here, member, MEMBER_KEYS, "in a member")
            name = member.get("name")
            weight = member.get("weight", 1.0)
            capacity = member.get("capacity")
            if not isinstance(name, str) or not name:
                problems.add(here, "a member needs a `name`")
                continue
            if not isinstance(weight, int | float) or isinstance(weight, bool) or weight <= 0:
                problems.add((*here, "weight"), "`weight` must be a positive number")
                weight = 1.0
            if capacity is not None and (not isinstance(capacity, int) or capacity < 0):
                problems.add((*here, "capacity"), "`capacity` must be a whole number ≥ 0")
                capacity = None
            members.append(Member(name, float(weight), capacity))
        else:
            problems.add(
                here, f"a member is a name or `{{name, weight, capacity}}`, not {describe(member)}"
            )
    if strategy == "capacity" and any(m.capacity is None for m in members):
        problems.add((*path, "strategy"), "strategy `capacity` needs a `capacity` for every member")
    account_owner = raw.get("account_owner", False)
    if not isinstance(account_owner, bool):
        problems.add((*path, "account_owner"), "`account_owner` must be true or false")
        account_owner = False
    return Assignment(team, strategy, tuple(members), account_owner)
