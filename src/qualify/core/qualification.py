"""Criteria (MQL, PQL, tiers, grades) evaluated on a score, and the moment they first hold."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Set

from qualify.model.qualification import Criteria

__all__ = ["criteria_hold", "first_match", "first_moment"]


def criteria_hold(
    criteria: Criteria, fit: float, engagement: float, score: float, holding: Set[str]
) -> bool:
    """Every condition given must hold; rule names hold when the rule earns points now."""
    if criteria.score_at_least is not None and score < criteria.score_at_least:
        return False
    if criteria.fit_at_least is not None and fit < criteria.fit_at_least:
        return False
    if criteria.engagement_at_least is not None and engagement < criteria.engagement_at_least:
        return False
    if criteria.all and not all(name in holding for name in criteria.all):
        return False
    return not criteria.any or any(name in holding for name in criteria.any)


def first_match(
    entries: tuple[tuple[str, Criteria], ...],
    fit: float,
    engagement: float,
    score: float,
    holding: Set[str],
) -> str | None:
    """The first tier (or grade) whose criteria hold: order in the model is priority."""
    for name, criteria in entries:
        if criteria_hold(criteria, fit, engagement, score, holding):
            return name
    return None


def first_moment(
    candidates: Iterable[float], holds_at: Callable[[float], bool], *, not_before: float
) -> float | None:
    """The earliest candidate moment ≥ `not_before` at which `holds_at` is true.

    Scores only rise when something happens — an event arrives, or a negative contribution
    expires — so criteria can only start to hold at such moments; the caller names them.
    """
    for moment in sorted({c for c in candidates if c >= not_before}):
        if holds_at(moment):
            return moment
    return None
