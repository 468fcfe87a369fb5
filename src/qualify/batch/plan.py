"""A scoring model compiled into one relational plan (Ibis): scores for every lead at once.

Inputs are two relations: `events` (lead_id, message_id, name, ts, properties as JSON) — the
messages rules can match, each already resolved to its lead — and `profiles` (lead_id,
profile as JSON, as of the scoring moment). The plan gives one row per lead: `fit`,
`engagement`, `score`, `mql`, `pql`, `tier`, `grade` and one points column per rule (NULL when
the rule does not hold), so batch results explain themselves like live ones.

Every engagement rule becomes a per-lead aggregate over its own hits, as in
`qualify.core.scoring`: hits sorted by (timestamp, messageId); `once` takes the first,
`distinct` the first per value, `times` the latest hit at which the count (or distinct count)
inside its window reached `times` — a range self-join, since the window ends at a row, not at a
timestamp; then expiry, decay by the earning hit's age, and the cap.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir

from qualify.batch.dialects import DIALECTS, Dialect
from qualify.batch.predicates import (
    Document,
    Fallbacks,
    PredicateCompiler,
    distinct_key,
    uses_of,
)
from qualify.model.qualification import Criteria
from qualify.model.rules import EngagementRule, FitRule
from qualify.model.scoring_model import ScoringModel

__all__ = ["FIT_PREFIX", "RULE_PREFIX", "ScorePlan", "compile_plan", "event_keys"]

RULE_PREFIX = "rule:"  # per-rule points columns: `rule:<rule name>`
FIT_PREFIX = "holds:"  # a profile column: whether a fit rule holds, judged in Python
_tags = itertools.count()


@dataclass(frozen=True)
class ScorePlan:
    """The compiled plan and the Python functions it calls for rare values (kept with it).

    `rare`: the leads holding values only Python judges exactly (on engines that cannot
    call Python), or events the engine flagged (`rare` column); their rows in `table` are
    not to be trusted, the engine scores them live.
    """

    table: ir.Table
    fallbacks: Fallbacks
    rare: ir.Table | None = None


def compile_plan(
    model: ScoringModel,
    events: ir.Table,
    profiles: ir.Table,
    as_of: float,
    dialect: Dialect = DIALECTS["duckdb"],
    keep: Callable[[ir.Table], ir.Table] | None = None,
) -> ScorePlan:
    """The plan scoring every lead named in `events` or `profiles` as of `as_of`.

    `events` may hold a `rare` column (true where the engine itself saw a value it cannot
    judge, such as a non-ASCII event name); rows the rules cannot match are fine in it.
    `keep` stores a relation the plan uses many times, for an engine that would otherwise
    compute it again at each use: the rule events (their properties as the engine's own
    JSON), then the same with the values rules read taken out of the JSON.
    """
    event_uses = _event_uses(model)
    # Fit rules judged beforehand (where profiles were built, in Python) come as columns.
    judged = {r.name for r in model.fit if FIT_PREFIX + r.name in profiles.columns}
    fit_uses = _uses([r.when for r in model.fit if r.name not in judged])
    dialect.check_model({op for ops in (*event_uses.values(), *fit_uses.values()) for op in ops})
    fallbacks = Fallbacks(str(next(_tags)), dialect)
    number = dialect.floating
    compiler = PredicateCompiler(fallbacks)
    flagged = "rare" in events.columns
    events = events.select(
        "lead_id", "message_id", "name", "ts", "properties", *(["rare"] if flagged else [])
    ).filter(events.ts <= as_of)
    named = sorted(set().union(*(r.events for r in model.engagement)))
    if not named:
        events = events.filter(False)
    elif flagged:  # a flagged row's name may not be what rules match: it must stay to flag
        events = events.filter(events.name.isin(named) | events.rare.fill_null(False))
    else:
        events = events.filter(events.name.isin(named))
    if keep is not None:
        events = keep(events.mutate(properties=dialect.document(events.properties)))
    events, properties = Document.prepare(events, "properties", set(event_uses), "p_", fallbacks)
    if keep is not None:
        events = keep(events)
    leads = events.select("lead_id").union(profiles.select("lead_id"), distinct=True).distinct()
    table = leads.left_join(profiles, "lead_id").select(
        leads.lead_id, profiles.profile, *(profiles[FIT_PREFIX + name] for name in sorted(judged))
    )
    table, profile = Document.prepare(table, "profile", set(fit_uses), "f_", fallbacks)
    rare = None
    if dialect.python_udfs and flagged:  # Python judges the values; flagged rows it has not
        rare = events.filter(events.rare.fill_null(False)).select("lead_id").distinct()
    elif not dialect.python_udfs:
        odd_events = properties.rare(events, event_uses)
        if flagged:
            odd_events = odd_events | events.rare.fill_null(False)
        rare = (
            events.filter(odd_events)
            .select("lead_id")
            .union(table.filter(profile.rare(table, fit_uses)).select("lead_id"))
            .distinct()
        )
    columns: dict[str, ir.Value] = {}
    for rule in model.fit:
        if rule.name in judged:
            holds = table[FIT_PREFIX + rule.name].fill_null(False)
        else:
            holds = compiler.compile(rule.when, profile, table).fill_null(False)
        column = RULE_PREFIX + rule.name
        columns[column] = ibis.ifelse(holds, number(rule.points), ibis.null("float64"))
    table = table.mutate(**columns)
    for rule in model.engagement:
        points = _engagement(rule, events, properties, as_of, model.half_life, compiler)
        table = table.left_join(points, "lead_id").drop("lead_id_right")
    table = table.mutate(
        fit=_points(table, model.fit, number), engagement=_points(table, model.engagement, number)
    )
    table = table.mutate(score=table.fit + table.engagement)
    holding = {name: table[RULE_PREFIX + name].notnull() for name in model.rule_names}
    q = model.qualification

    def holds(criteria: Criteria | None, *, grade: bool = False) -> ir.BooleanValue:
        if criteria is None:
            return ibis.literal(False)
        engagement = number(0) if grade else table.engagement
        score = table.fit if grade else table.score
        return _criteria(criteria, table.fit, engagement, score, holding)

    def first(entries: tuple[tuple[str, Criteria], ...], *, grade: bool = False) -> ir.Value:
        if not entries:
            return ibis.null("string")
        return ibis.cases(
            *((holds(c, grade=grade), name) for name, c in entries), else_=ibis.null("string")
        )

    table = table.mutate(
        mql=holds(q.mql),
        pql=holds(q.pql),
        tier=first(q.tiers),
        grade=first(q.grades, grade=True),
    )
    rule_columns = tuple(RULE_PREFIX + name for name in model.rule_names)
    table = table.select(
        "lead_id", "fit", "engagement", "score", "mql", "pql", "tier", "grade", *rule_columns
    )
    return ScorePlan(table, fallbacks, rare)


def event_keys(model: ScoringModel) -> set[str]:
    """The property keys engagement rules read (in `where` or as `distinct`)."""
    return set(_event_uses(model))


def _event_uses(model: ScoringModel) -> dict[str, set[str]]:
    uses = _uses([r.where for r in model.engagement])
    for rule in model.engagement:
        if rule.distinct is not None:
            uses.setdefault(rule.distinct, set()).add("distinct")
    return uses


def _uses(predicates: list[Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for predicate in predicates:
        for key, ops in uses_of(predicate).items():
            found.setdefault(key, set()).update(ops)
    return found


def _points(
    table: ir.Table,
    rules: tuple[FitRule, ...] | tuple[EngagementRule, ...],
    number: Callable[[float], ir.FloatingValue],
) -> Any:
    """The rules' points summed left to right from 0.0, the order in which the live engine
    adds them (so the same bits); a rule that does not hold adds 0.0."""
    total: ir.FloatingValue = number(0)
    for rule in rules:
        total = total + table[RULE_PREFIX + rule.name].fill_null(number(0))
    return total


def _criteria(
    criteria: Criteria,
    fit: ir.FloatingValue,
    engagement: ir.FloatingValue,
    score: ir.FloatingValue,
    holding: dict[str, ir.BooleanValue],
) -> ir.BooleanValue:
    result: ir.BooleanValue = ibis.literal(True)
    if criteria.score_at_least is not None:
        result = result & (score >= criteria.score_at_least)
    if criteria.fit_at_least is not None:
        result = result & (fit >= criteria.fit_at_least)
    if criteria.engagement_at_least is not None:
        result = result & (engagement >= criteria.engagement_at_least)
    for name in criteria.all:
        result = result & holding.get(name, ibis.literal(False))
    if criteria.any:
        anyone: ir.BooleanValue = ibis.literal(False)
        for name in criteria.any:
            anyone = anyone | holding.get(name, ibis.literal(False))
        result = result & anyone
    return result


def _engagement(
    rule: EngagementRule,
    events: ir.Table,
    properties: Document,
    as_of: float,
    half_life: float | None,
    compiler: PredicateCompiler,
) -> ir.Table:
    """(lead_id, `rule:<name>`) for the leads the rule gives points to."""
    number = compiler.fallbacks.dialect.floating
    hits = events.filter(events.name.isin(list(rule.events)))
    if rule.where is not None:
        hits = hits.filter(compiler.compile(rule.where, properties, hits))
    if rule.distinct is not None:
        hits = hits.mutate(value=distinct_key(properties, hits, rule.distinct))
        hits = hits.filter(hits.value.notnull())
    else:
        hits = hits.mutate(value=ibis.null("string"))
    hits = hits.select("lead_id", "message_id", "ts", "value")
    earning = _earning(rule, hits)
    if rule.expires_after is not None:
        earning = earning.filter(earning.ts >= as_of - rule.expires_after)
    if half_life is None:
        total = earning.count().cast("float64") * number(rule.points)
    else:
        decayed = number(0.5).pow((number(as_of) - earning.ts) / number(half_life))
        total = compiler.fallbacks.dialect.sum_floats(decayed) * number(rule.points)
    points = earning.group_by("lead_id").aggregate(total=total)
    capped = points.total
    if rule.max_points is not None:
        cap = number(rule.max_points)
        if rule.points > 0:
            capped = ibis.ifelse(points.total > cap, cap, points.total)
        elif rule.points < 0:
            capped = ibis.ifelse(points.total < -cap, -cap, points.total)
    return points.select("lead_id", **{RULE_PREFIX + rule.name: capped})


def _earning(rule: EngagementRule, hits: ir.Table) -> ir.Table:
    """The hits that earn the rule's points (before expiry)."""
    kind = rule.kind
    order = [hits.ts, hits.message_id]
    if kind == "each":
        return hits
    if kind == "once":
        first = ibis.row_number().over(group_by=hits.lead_id, order_by=order)
        return hits.filter(first == 0)
    if kind == "distinct":
        first = ibis.row_number().over(group_by=[hits.lead_id, hits.value], order_by=order)
        return hits.filter(first == 0)
    times = rule.times or 1
    if rule.within is None:
        count = (hits.value.nunique() if rule.distinct is not None else hits.count()).name("held")
        enough = hits.group_by("lead_id").aggregate(held=count)
        enough = enough.filter(enough.held >= times).select("lead_id")
        counted = hits.semi_join(enough, "lead_id")
    else:
        # For each hit k, the hits j in its window: ts_j ≥ ts_k − within, and not after k
        # in (timestamp, messageId) order — the live engine's `bisect_left` .. k.
        k = hits
        j = hits.view()
        pairs = k.join(
            j,
            [
                k.lead_id == j.lead_id,
                j.ts >= k.ts - rule.within,
                (j.ts < k.ts) | ((j.ts == k.ts) & (j.message_id <= k.message_id)),
            ],
        ).select(
            lead_id=k.lead_id,
            message_id=k.message_id,
            ts=k.ts,
            value=k.value,
            other=j.value if rule.distinct is not None else j.message_id,
        )
        held = pairs.group_by(["lead_id", "message_id", "ts", "value"]).aggregate(
            held=pairs.other.nunique()
        )
        counted = held.filter(held.held >= times).select("lead_id", "message_id", "ts", "value")
    latest = ibis.row_number().over(
        group_by=counted.lead_id, order_by=[counted.ts.desc(), counted.message_id.desc()]
    )
    return counted.filter(latest == 0)
