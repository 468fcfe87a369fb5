"""When did a lead's MQL criteria first hold? Moments from a lead's state and profile.

A score is a function of time: it rises when a matching event happens, when the profile
changes (an identify or group message), or when a negative contribution expires, so criteria
can start to hold only at those moments; we check them in order and stop at the first. One
case is not exact: a *decaying* negative contribution raises the score continuously, and the
crossing is then found at the next check (an event, a refresh), not at the instant it happened.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence

from qualify.core.qualification import criteria_hold, first_moment
from qualify.core.scoring import CompiledModel, FitPart, LeadScore, score_state
from qualify.core.state import Hit, LeadState

__all__ = ["candidate_moments", "qualification_moment"]


def _timestamp(hit: Hit) -> float:
    return hit[0]


def candidate_moments(
    compiled: CompiledModel,
    state: LeadState,
    not_before: float,
    until: float,
    also: Iterable[float] = (),
) -> set[float]:
    """Every moment in [not_before, until] at which the lead's score may have risen: its
    matching events, negative contributions lapsing, and the moments given in `also`
    (profile changes, the end of a recycle period, the check's own time)."""
    moments = set(also)
    for hits in state.hits:
        start = bisect_left(hits, not_before, key=_timestamp)
        for hit in hits[start:]:
            if hit[0] > until:
                break
            moments.add(hit[0])
    for i in compiled.negative_expiring:
        after = compiled.rules[i].expires_after
        assert after is not None
        for hit in state.hits[i]:
            lapse = math.nextafter(hit[0] + after, math.inf)
            if not_before <= lapse <= until:
                moments.add(lapse)
    return {m for m in moments if not_before <= m <= until}


def _could_hold(
    compiled: CompiledModel, state: LeadState, fits: Iterable[tuple[float, tuple]], until: float
) -> bool:
    """False when the MQL criteria cannot hold at any moment up to `until`: an upper bound of
    every rule (all its events count, nothing decays or expires, caps apply) falls short.
    Most leads never qualify; this spares scoring them at each of their events."""
    criteria = compiled.model.qualification.mql
    assert criteria is not None
    fit_high = max((points for points, _ in fits), default=0.0)
    possible = {c.rule for _, contributions in fits for c in contributions}
    engagement_high = 0.0
    for rule, hits in zip(compiled.rules, state.hits, strict=True):
        if not hits:
            continue
        # as `rule_contribution`: most leads have no hit after `until`, so look at the end
        n = len(hits) if hits[-1][0] <= until else bisect_right(hits, until, key=_timestamp)
        if n == 0:
            continue
        kind = rule.kind
        if kind == "distinct" or (kind == "times" and rule.distinct is not None):
            count = len({h[2] for h in hits[:n]})
        else:
            count = n
        if kind == "times" and count < (rule.times or 1):
            continue
        possible.add(rule.name)
        if rule.points <= 0:
            continue
        value = rule.points * (count if kind in ("each", "distinct") else 1)
        if rule.max_points is not None:
            value = min(value, rule.max_points)
        engagement_high += value
    return criteria_hold(criteria, fit_high, engagement_high, fit_high + engagement_high, possible)


def qualification_moment(
    compiled: CompiledModel,
    fit_at: Callable[[float], FitPart],
    profile_moments: Sequence[float],
    state: LeadState,
    not_before: float,
    until: float,
    *,
    also: Iterable[float] = (),
) -> tuple[float, LeadScore] | None:
    """The first moment in [not_before, until] at which the MQL criteria hold, with the
    score at that moment (its contributions are the rules that brought the lead there).

    `fit_at(t)` is the fit part (`fit_part`) of the profile as known at t; the profile
    changes only at `profile_moments` (sorted), so it is asked once per profile, not once
    per moment. `also` adds moments to check besides events and profile changes.
    """
    if compiled.model.qualification.mql is None or until < not_before:
        return None
    fits: dict[int, FitPart] = {}

    def fit_of(moment: float) -> FitPart:
        epoch = bisect_right(profile_moments, moment)
        found = fits.get(epoch)
        if found is None:
            found = fits[epoch] = fit_at(moment)
        return found

    in_range = [m for m in profile_moments if not_before <= m <= until]
    epochs = [fit_of(not_before)] + [fit_of(m) for m in in_range]
    if not _could_hold(compiled, state, epochs, until):
        return None
    found: dict[float, LeadScore] = {}

    def holds(moment: float) -> bool:
        # the profile itself is not needed: score_state reads it only for the fit part
        result = score_state(compiled, {}, state, moment, fit=fit_of(moment))
        found[moment] = result
        return result.mql

    candidates = candidate_moments(compiled, state, not_before, until, [*in_range, *also])
    moment = first_moment(candidates, holds, not_before=not_before)
    return None if moment is None else (moment, found[moment])
