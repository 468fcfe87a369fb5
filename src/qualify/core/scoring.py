"""The scoring engine: fit + engagement, windows, distinct counts, caps, expiry and decay.

A score is a pure function of (model, profile, events with timestamp ≤ as-of, as-of). The
engine keeps, per lead, the events each rule matched (`LeadState`); scoring evaluates each rule
over its own list, so the result never depends on the order in which events arrived.

How each engagement rule earns (the user's guide has examples):
- `each` (plain): `points` per matching event;
- `once`: points for the first matching event only;
- `distinct` without `times`: points for each new value of the property;
- `times` (± `within`, ± `distinct`): points once, when `times` matching events (distinct
  values) fall inside one window (`within`, inclusive) or, without `within`, ever. The
  earning event is the latest at which the count stood reached in its window, so repeated
  behaviour keeps the contribution fresh for decay and expiry.
- `expires_after` drops an earning event's points once it is older than that; decay halves
  them every half-life by the age of the earning event; `max_points` caps the rule's total
  after decay (for a negative rule, how much it can take away).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from qualify.core.activity import ActivityEvent
from qualify.core.predicates import Test, compile_predicate, keys_read, lookup
from qualify.core.qualification import criteria_hold, first_match
from qualify.core.state import Hit, LeadState
from qualify.model.rules import EngagementRule
from qualify.model.scoring_model import ScoringModel

__all__ = [
    "CompiledModel",
    "Contribution",
    "FitPart",
    "LeadScore",
    "ValuesAt",
    "evaluate",
    "fit_part",
    "rule_contribution",
    "score_state",
]


def _timestamp(hit: Hit) -> float:
    return hit[0]


def normalise_distinct(value: Any) -> Any:
    """Distinct values compare like the predicate language: text ignores case, 1 == 1.0."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value.strip().casefold()
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one rule gives a lead right now, and why."""

    rule: str
    aspect: str  # "fit" or "engagement"
    points: float
    raw_points: float = 0.0  # before decay and cap
    capped: bool = False
    decayed: bool = False
    expired: int = 0  # earning events whose points expired
    events: tuple[str, ...] = ()  # messageIds of the earning events

    # The fields are in `to_dict`'s order, so orjson can write a contribution as it is.

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "aspect": self.aspect,
            "points": self.points,
            "raw_points": self.raw_points,
            "capped": self.capped,
            "decayed": self.decayed,
            "expired": self.expired,
            "events": list(self.events),
        }


FitPart = tuple[float, tuple[Contribution, ...]]  # what `fit_part` gives: points, contributions


@dataclass(frozen=True, slots=True)
class LeadScore:
    fit: float
    engagement: float
    score: float
    mql: bool
    pql: bool
    tier: str | None
    grade: str | None
    contributions: tuple[Contribution, ...] = field(default=())

    @property
    def holding(self) -> frozenset[str]:
        """The rules that hold: they currently earn their points."""
        return frozenset(c.rule for c in self.contributions)

    def rule_points(self) -> dict[str, float]:
        return {c.rule: c.points for c in self.contributions}

    def to_dict(self) -> dict[str, Any]:
        return {
            "fit": self.fit,
            "engagement": self.engagement,
            "score": self.score,
            "mql": self.mql,
            "pql": self.pql,
            "tier": self.tier,
            "grade": self.grade,
            "contributions": [c.to_dict() for c in self.contributions],
        }


class CompiledModel:
    """A model with its predicates compiled and its rules indexed by event name."""

    def __init__(self, model: ScoringModel) -> None:
        self.model = model
        self.fit_tests: list[Test] = [compile_predicate(r.when) for r in model.fit]
        # what the fit score reads of a profile: its memo is keyed by these entries alone,
        # so leads alike in what fit rules test share it (e-mails and names differ)
        self.fit_keys: tuple[str, ...] = tuple(
            sorted(set().union(*(keys_read(r.when) for r in model.fit)))
        )
        self.rules: tuple[EngagementRule, ...] = model.engagement
        self.where: list[Test | None] = [
            compile_predicate(r.where) if r.where is not None else None for r in self.rules
        ]
        index: dict[str, list[int]] = {}
        for i, rule in enumerate(self.rules):
            for name in rule.events:
                index.setdefault(name, []).append(i)
        # per event name: (rule index, its `where` test, its `distinct` key) — what `apply`
        # needs, gathered once so the hot path does no lookups
        self.by_name: dict[str, tuple[tuple[int, Test | None, str | None], ...]] = {
            k: tuple((i, self.where[i], self.rules[i].distinct) for i in v)
            for k, v in index.items()
        }
        self.fit_memo: dict[bytes, FitPart] = {}
        self.negative_expiring = [
            i for i, r in enumerate(self.rules) if r.points < 0 and r.expires_after is not None
        ]

    def new_state(self) -> LeadState:
        return LeadState(len(self.rules))

    def apply(self, state: LeadState, event: ActivityEvent) -> list[int]:
        """Record an event in the state of its lead; return the rules it matched anew."""
        matches = self.match(event)
        return state.record(matches) if matches else []

    def match(self, event: ActivityEvent) -> list[tuple[int, Hit]]:
        """The hits an event makes, as (rule index, hit), without touching any lead.

        Matching reads only the event, recording reads only the lead: kept apart, a caller
        can match a message while it is fresh in memory and record the hits of many
        messages lead by lead. A `distinct` rule counts only events carrying the property.
        """
        candidates = self.by_name.get(event.name)
        if not candidates:
            return []
        matches = []
        properties = event.properties
        for i, test, key in candidates:
            if test is not None and not test(properties):
                continue
            value = None
            if key is not None:
                value = normalise_distinct(lookup(properties, key))
                if value is None:
                    continue
            matches.append((i, (event.timestamp, event.message_id, value)))
        return matches


def _latest_held(rule: EngagementRule, hits: Sequence[Hit], n: int) -> int | None:
    """Index of the latest hit at which the rule's count stood reached, if any."""
    times = rule.times or 1
    if n < times:
        return None
    if rule.within is None:
        if rule.distinct is None:
            return n - 1
        return n - 1 if len({h[2] for h in hits[:n]}) >= times else None
    within = rule.within
    for k in range(n - 1, times - 2, -1):
        lo = bisect_left(hits, hits[k][0] - within, 0, k + 1, key=_timestamp)
        if rule.distinct is None:
            if k - lo + 1 >= times:
                return k
        elif len({hits[j][2] for j in range(lo, k + 1)}) >= times:
            return k
    return None


def _earning(rule: EngagementRule, hits: Sequence[Hit], n: int) -> Sequence[int]:
    kind = rule.kind
    if n == 0:
        return ()
    if kind == "each":
        return range(n)
    if kind == "once":
        return range(1)
    if kind == "distinct":
        seen: set[Any] = set()
        first = []
        for i in range(n):
            value = hits[i][2]
            if value not in seen:
                seen.add(value)
                first.append(i)
        return first
    k = _latest_held(rule, hits, n)
    return () if k is None else (k,)


def rule_contribution(
    rule: EngagementRule,
    hits: Sequence[Hit],
    as_of: float,
    half_life: float | None,
    *,
    explain: bool = False,
) -> Contribution | None:
    """What an engagement rule gives at `as_of`, or None when it does not hold."""
    if not hits:
        return None
    # Bisecting calls a key function at every step; most leads have no hit after `as_of`
    # and none expired, so look at the ends first.
    n = len(hits) if hits[-1][0] <= as_of else bisect_right(hits, as_of, key=_timestamp)
    earning = _earning(rule, hits, n)
    if not earning:
        return None
    expired = 0
    if rule.expires_after is not None:
        oldest = as_of - rule.expires_after
        if isinstance(earning, range):
            first = earning.start
            if hits[first][0] < oldest:
                first = bisect_left(hits, oldest, first, n, key=_timestamp)
            expired = first - earning.start
            earning = range(first, earning.stop)
        else:
            kept = [i for i in earning if hits[i][0] >= oldest]
            expired = len(earning) - len(kept)
            earning = kept
        if not earning:
            return None
    points = rule.points
    raw = points * len(earning)
    earned = hits[earning.start : earning.stop] if isinstance(earning, range) else None
    if half_life is None:
        total = raw
    else:  # the same expression as `_decay`, inlined: this is summed for every hit
        if earned is None:
            earned = [hits[i] for i in earning]
        total = points * math.fsum([0.5 ** ((as_of - h[0]) / half_life) for h in earned])
    total, capped = _capped(rule, total)
    events: tuple[str, ...] = ()
    if explain:
        if earned is None:
            earned = [hits[i] for i in earning]
        events = tuple([h[1] for h in earned])
    return Contribution(
        rule.name, "engagement", total, raw, capped, half_life is not None, expired, events
    )


def _decay(as_of: float, ts: float, half_life: float) -> float:
    return 0.5 ** ((as_of - ts) / half_life)


def _capped(rule: EngagementRule, total: float) -> tuple[float, bool]:
    """`max_points` bounds what a rule gives, or on a negative rule what it takes away."""
    cap = rule.max_points
    if cap is not None:
        if rule.points > 0 and total > cap:
            return cap, True
        if rule.points < 0 and total < -cap:
            return -cap, True
    return total, False


class ValuesAt:
    """What decaying `each` rules give at one fixed moment, kept up to date as hits arrive.

    Ingestion values each new hit at its batch's clock; recomputing such a rule from all of
    a lead's hits made that quadratic in the lead's history. The decay terms are kept, and
    summed with `math.fsum`, which is exactly rounded in any order: the points equal
    `rule_contribution`'s to the last bit. Other rules are not kept (None).
    """

    def __init__(self, compiled: CompiledModel, as_of: float) -> None:
        self.rules = compiled.rules
        self.half_life = compiled.model.half_life
        self.as_of = as_of
        self.terms: dict[str, dict[int, list[float]]] = {}

    def points(self, lead_id: str, index: int, hits: Sequence[Hit], new_ts: float) -> float | None:
        """The rule's points after a hit at `new_ts` was added to `hits`."""
        rule, half_life, as_of = self.rules[index], self.half_life, self.as_of
        if half_life is None or rule.kind != "each":
            return None
        oldest = -math.inf if rule.expires_after is None else as_of - rule.expires_after
        by_rule = self.terms.setdefault(lead_id, {})
        terms = by_rule.get(index)
        if terms is None:
            n = bisect_right(hits, as_of, key=_timestamp)
            start = bisect_left(hits, oldest, 0, n, key=_timestamp)
            terms = by_rule[index] = [_decay(as_of, h[0], half_life) for h in hits[start:n]]
        elif oldest <= new_ts <= as_of:
            terms.append(_decay(as_of, new_ts, half_life))
        if not terms:
            return 0.0
        return _capped(rule, rule.points * math.fsum(terms))[0]

    def forget(self, lead_id: str) -> None:
        """The lead's hits changed other than by one new hit (a merge)."""
        self.terms.pop(lead_id, None)


def fit_part(compiled: CompiledModel, profile: Mapping[str, Any]) -> FitPart:
    """The fit score and its contributions: a function of the profile alone.

    Profiles change rarely while a lead is scored again and again (at each event, each
    batch), so results are remembered by the content of the entries fit rules read.
    """
    read = {k: profile[k] for k in compiled.fit_keys if k in profile}
    try:
        key = orjson.dumps(read, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # a profile that is not JSON (only built by hand): no memo
        return _fit_part(compiled, profile)
    found = compiled.fit_memo.get(key)
    if found is None:
        if len(compiled.fit_memo) >= 50_000:
            compiled.fit_memo.clear()
        found = compiled.fit_memo[key] = _fit_part(compiled, profile)
    return found


def _fit_part(compiled: CompiledModel, profile: Mapping[str, Any]) -> FitPart:
    contributions = []
    fit = 0.0
    for rule, test in zip(compiled.model.fit, compiled.fit_tests, strict=True):
        if test(profile):
            fit += rule.points
            contributions.append(Contribution(rule.name, "fit", rule.points, rule.points))
    return fit, tuple(contributions)


def score_state(
    compiled: CompiledModel,
    profile: Mapping[str, Any],
    state: LeadState,
    as_of: float,
    *,
    explain: bool = False,
    fit: FitPart | None = None,
) -> LeadScore:
    """Score a lead from its profile and state, as of a moment.

    `fit` may carry `fit_part(compiled, profile)` when the caller scores the same profile at
    many moments (finding when a lead first qualified).
    """
    fit_points, fit_contributions = fit if fit is not None else fit_part(compiled, profile)
    contributions = list(fit_contributions)
    engagement = 0.0
    half_life = compiled.model.half_life
    for rule, hits in zip(compiled.rules, state.hits, strict=True):
        if not hits:
            continue
        contribution = rule_contribution(rule, hits, as_of, half_life, explain=explain)
        if contribution is not None:
            engagement += contribution.points
            contributions.append(contribution)
    total = fit_points + engagement
    holding = {c.rule for c in contributions}
    q = compiled.model.qualification
    return LeadScore(
        fit=fit_points,
        engagement=engagement,
        score=total,
        mql=q.mql is not None and criteria_hold(q.mql, fit_points, engagement, total, holding),
        pql=q.pql is not None and criteria_hold(q.pql, fit_points, engagement, total, holding),
        tier=first_match(q.tiers, fit_points, engagement, total, holding),
        grade=first_match(q.grades, fit_points, 0.0, fit_points, holding),
        contributions=tuple(contributions),
    )


def evaluate(
    compiled: CompiledModel,
    profile: Mapping[str, Any],
    events: Iterable[ActivityEvent],
    as_of: float,
    *,
    explain: bool = True,
) -> LeadScore:
    """Score a lead from scratch: its profile and every event it has, as of a moment."""
    state = compiled.new_state()
    for event in events:
        if event.timestamp <= as_of:
            compiled.apply(state, event)
    return score_state(compiled, profile, state, as_of, explain=explain)
