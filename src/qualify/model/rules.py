"""Fit rules (on the profile) and engagement rules (on events), parsed and validated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qualify.model.predicates import AllOf, Predicate, parse_predicate
from qualify.model.problems import Problems, describe

__all__ = ["EngagementRule", "FitRule", "parse_engagement_rules", "parse_fit_rules"]

FIT_KEYS = ("name", "when", "points", "description")
ENGAGEMENT_KEYS = (
    "name",
    "event",
    "where",
    "points",
    "max_points",
    "times",
    "within",
    "distinct",
    "once",
    "expires_after",
    "description",
)


@dataclass(frozen=True, slots=True)
class FitRule:
    name: str
    when: Predicate
    points: float
    description: str = ""


@dataclass(frozen=True, slots=True)
class EngagementRule:
    """One behaviour rule. `events` holds the casefolded event names it matches."""

    name: str
    events: tuple[str, ...]
    points: float
    where: Predicate | None = None
    max_points: float | None = None
    times: int | None = None
    within: float | None = None  # seconds
    distinct: str | None = None
    once: bool = False
    expires_after: float | None = None  # seconds
    description: str = ""

    @property
    def kind(self) -> str:
        """How the rule earns: `once`, `times`, `distinct` (per new value) or `each` event."""
        if self.times is not None:
            return "times"
        if self.once:
            return "once"
        if self.distinct is not None:
            return "distinct"
        return "each"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _label(name: str) -> str:
    return f"rule `{name}`" if name else "this rule"


def _common(raw: dict[str, Any], path: tuple[Any, ...], problems: Problems) -> tuple[str, float]:
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        if "name" in raw:
            problems.add((*path, "name"), f"a rule's `name` must be a text, not {describe(name)}")
        else:
            problems.missing(
                path,
                "name",
                "this rule has no `name`: every rule needs a unique name (explanations show it)",
            )
        name = ""
    points = raw.get("points")
    if "points" not in raw:
        problems.missing(path, "points", f"{_label(name.strip())} has no `points`")
        points = 0
    elif not _number(points):
        problems.add((*path, "points"), f"`points` must be a number, not {describe(points)}")
        points = 0
    description = raw.get("description", "")
    if not isinstance(description, str):
        problems.add((*path, "description"), "`description` must be a text")
        description = ""
    return name.strip(), points


def parse_fit_rules(value: Any, problems: Problems) -> tuple[FitRule, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.add(("fit",), "`fit` must be a list of rules")
        return ()
    rules = []
    for i, raw in enumerate(value):
        path = ("fit", i)
        if not problems.expect_mapping(path, raw, "a fit rule"):
            continue
        problems.check_keys(path, raw, FIT_KEYS, "in a fit rule")
        name, points = _common(raw, path, problems)
        if "when" not in raw:
            problems.missing(
                path,
                "when",
                f"{_label(name)} has no `when`: say which profiles "
                "it matches, e.g. `when: {industry: software}`",
            )
            when: Predicate = AllOf(())
        else:
            when = parse_predicate(raw["when"], (*path, "when"), problems)
        rules.append(FitRule(name, when, points, raw.get("description", "") or ""))
    return tuple(rules)


def parse_engagement_rules(value: Any, problems: Problems) -> tuple[EngagementRule, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.add(("engagement",), "`engagement` must be a list of rules")
        return ()
    rules = []
    for i, raw in enumerate(value):
        path = ("engagement", i)
        if not problems.expect_mapping(path, raw, "an engagement rule"):
            continue
        problems.check_keys(path, raw, ENGAGEMENT_KEYS, "in an engagement rule")
        rules.append(_engagement_rule(raw, path, problems))
    return tuple(rules)


def _engagement_rule(
    raw: dict[str, Any], path: tuple[Any, ...], problems: Problems
) -> EngagementRule:
    name, points = _common(raw, path, problems)
    events = _event_names(raw, path, name, problems)
    where = parse_predicate(raw["where"], (*path, "where"), problems) if "where" in raw else None
    max_points = raw.get("max_points")
    if max_points is not None and (not _number(max_points) or max_points <= 0):
        problems.add(
            (*path, "max_points"),
            "`max_points` must be a positive number "
            "(for a negative rule it caps how much it can take away)",
        )
        max_points = None
    times = raw.get("times")
    if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 1):
        problems.add((*path, "times"), f"`times` must be a whole number ≥ 1, not {describe(times)}")
        times = None
    within = problems.duration(raw, "within", path)
    if within is not None and "times" not in raw:
        problems.add(
            (*path, "within"),
            "`within` needs `times`: say how many matching events must fall inside the window",
            key=True,
        )
    distinct = raw.get("distinct")
    if distinct is not None and (not isinstance(distinct, str) or not distinct):
        problems.add(
            (*path, "distinct"),
            "`distinct` names the property whose distinct values "
            "are counted, e.g. `distinct: category`",
        )
        distinct = None
    once = raw.get("once", False)
    if not isinstance(once, bool):
        problems.add((*path, "once"), f"`once` must be true or false, not {describe(once)}")
        once = False
    if once and times is not None:
        problems.add(
            (*path, "once"),
            "`once` cannot be combined with `times`: a `times` rule already gives its points once",
            key=True,
        )
    expires_after = problems.duration(raw, "expires_after", path)
    return EngagementRule(
        name=name,
        events=events,
        points=points,
        where=where,
        max_points=max_points,
        times=times,
        within=within,
        distinct=distinct,
        once=once,
        expires_after=expires_after,
        description=raw.get("description", "") if isinstance(raw.get("description"), str) else "",
    )


def _event_names(
    raw: dict[str, Any], path: tuple[Any, ...], name: str, problems: Problems
) -> tuple[str, ...]:
    if "event" not in raw:
        problems.missing(
            path,
            "event",
            f"{_label(name)} has no `event`: name the event it "
            "counts (e.g. `event: Webinar Attended`, or `event: page` for page views)",
        )
        return ()
    event = raw["event"]
    names = event if isinstance(event, list) else [event]
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        problems.add((*path, "event"), "`event` must be an event name or a list of names")
        return ()
    return tuple(dict.fromkeys(n.strip().casefold() for n in names))
