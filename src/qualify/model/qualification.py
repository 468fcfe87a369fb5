"""Qualification: the MQL and PQL criteria, tiers (first match wins) and grades (fit only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qualify.model.problems import Problems, describe, near_miss

__all__ = ["Criteria", "Qualification", "parse_qualification"]

CRITERIA_KEYS = ("score_at_least", "fit_at_least", "engagement_at_least", "all", "any")
QUALIFICATION_KEYS = ("mql", "pql", "tiers", "grades")


@dataclass(frozen=True, slots=True)
class Criteria:
    """Every condition given must hold; `{}` (no condition) always holds."""

    score_at_least: float | None = None
    fit_at_least: float | None = None
    engagement_at_least: float | None = None
    all: tuple[str, ...] = ()
    any: tuple[str, ...] = ()

    @property
    def always(self) -> bool:
        return self == Criteria()

    def implies(self, other: Criteria) -> bool:
        """True when every lead meeting `self` also meets `other` (a sufficient check).

        Used to find tiers and grades that an earlier entry always shadows.
        """

        def weaker(mine: float | None, theirs: float | None) -> bool:
            return theirs is None or (mine is not None and mine >= theirs)

        return (
            weaker(self.score_at_least, other.score_at_least)
            and weaker(self.fit_at_least, other.fit_at_least)
            and weaker(self.engagement_at_least, other.engagement_at_least)
            and set(other.all) <= set(self.all)
            and (not other.any or bool(set(other.any) & set(self.all)))
        )


@dataclass(frozen=True, slots=True)
class Qualification:
    mql: Criteria | None = None
    pql: Criteria | None = None
    tiers: tuple[tuple[str, Criteria], ...] = ()
    grades: tuple[tuple[str, Criteria], ...] = ()


def parse_qualification(
    value: Any, problems: Problems, fit_rules: set[str], rules: set[str]
) -> Qualification:
    if value is None:
        return Qualification()
    path: tuple[Any, ...] = ("qualification",)
    if not problems.expect_mapping(path, value, "`qualification`"):
        return Qualification()
    problems.check_keys(path, value, QUALIFICATION_KEYS, "in `qualification`")
    mql = pql = None
    if "mql" in value:
        mql = parse_criteria(value["mql"], (*path, "mql"), problems, rules)
    if "pql" in value:
        pql = parse_criteria(value["pql"], (*path, "pql"), problems, rules)
    tiers = _ordered(value.get("tiers"), (*path, "tiers"), problems, rules, "tier")
    grades = _ordered(value.get("grades"), (*path, "grades"), problems, rules, "grade")
    for name, criteria in grades:
        if criteria.score_at_least is not None or criteria.engagement_at_least is not None:
            problems.add(
                (*path, "grades", name),
                f"grade `{name}` must depend on fit alone: use `fit_at_least` or fit rule names",
                key=True,
            )
        for key in ("all", "any"):
            for i, rule in enumerate(getattr(criteria, key)):
                if rule in rules and rule not in fit_rules:
                    problems.add(
                        (*path, "grades", name, key, i),
                        f"grade `{name}` must depend on fit alone: `{rule}` is an engagement rule",
                    )
    return Qualification(mql, pql, tiers, grades)


def _ordered(
    value: Any, path: tuple[Any, ...], problems: Problems, rules: set[str], what: str
) -> tuple[tuple[str, Criteria], ...]:
    if value is None:
        return ()
    if not problems.expect_mapping(path, value, f"`{path[-1]}`"):
        return ()
    entries = []
    for name, raw in value.items():
        entries.append((name, parse_criteria(raw, (*path, name), problems, rules)))
    for i, (name, criteria) in enumerate(entries):
        for earlier_name, earlier in entries[:i]:
            if criteria.implies(earlier):
                problems.add(
                    (*path, name),
                    f"{what} `{name}` can never match: every lead that "
                    f"meets it already meets `{earlier_name}` above it (first match "
                    "wins; order the strictest first)",
                    key=True,
                )
                break
    return tuple(entries)


def parse_criteria(
    value: Any, path: tuple[Any, ...], problems: Problems, rules: set[str]
) -> Criteria:
    if value is None:
        value = {}
    if not problems.expect_mapping(path, value, "criteria", "{score_at_least: 100}"):
        return Criteria()
    problems.check_keys(path, value, CRITERIA_KEYS, "in criteria")
    numbers: dict[str, float | None] = {}
    for key in ("score_at_least", "fit_at_least", "engagement_at_least"):
        raw = value.get(key)
        if raw is not None and (not isinstance(raw, int | float) or isinstance(raw, bool)):
            problems.add((*path, key), f"`{key}` must be a number, not {describe(raw)}")
            raw = None
        numbers[key] = raw
    names: dict[str, tuple[str, ...]] = {}
    for key in ("all", "any"):
        raw = value.get(key, [])
        if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
            problems.add((*path, key), f"`{key}` takes a list of rule names")
            raw = []
        for i, name in enumerate(raw):
            if name not in rules:
                guess = near_miss(name, rules)
                hint = f"; did you mean `{guess}`?" if guess else ""
                problems.add((*path, key, i), f"`{key}` names an unknown rule `{name}`{hint}")
        names[key] = tuple(raw)
    return Criteria(
        score_at_least=numbers["score_at_least"],
        fit_at_least=numbers["fit_at_least"],
        engagement_at_least=numbers["engagement_at_least"],
        all=names["all"],
        any=names["any"],
    )
