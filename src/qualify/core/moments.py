"""When did a lead's MQL criteria first hold? Moments from a lead's state and profile.

A score is a function of time: it rises when a matching event happens, when the profile
changes (an identify or group message), or when a negative contribution expires, so criteria
can start to hold only at those moments; we check them in order and stop at the first. One
case is not exact: a *decaying* negative contribution raises the score continuously, and the
crossing is then found at the next check (an event, a refresh), not at the instant it happened.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from qualify.core.qualification import first_moment
from qualify.core.scoring import CompiledModel, LeadScore, fit_part, score_state
from qualify.core.state import LeadState

__all__ = ["candidate_moments", "qualification_moment"]


def candidate_moments(
    compiled: CompiledModel,
    state: LeadState,
    not_before: float,
    until: float,
    profile_moments: Sequence[float] = (),
) -> set[float]:
    """Every moment in [not_before, until] at which the lead's score may have risen."""
    moments = {until, not_before, *profile_moments}
    for hits in state.hits:
        for hit in hits:
            if not_before <= hit[0] <= until:
                moments.add(hit[0])
    for i in compiled.negative_expiring:
        after = compiled.rules[i].expires_after
        assert after is not None
        for hit in state.hits[i]:
            lapse = math.nextafter(hit[0] + after, math.inf)
            if not_before <= lapse <= until:
                moments.add(lapse)
    return {m for m in moments if not_before <= m <= until}


def qualification_moment(
    compiled: CompiledModel,
    profile_at: Callable[[float], Mapping[str, Any]],
    profile_moments: Sequence[float],
    state: LeadState,
    not_before: float,
    until: float,
) -> tuple[float, LeadScore] | None:
    """The first moment in [not_before, until] at which the MQL criteria hold, with the
    score at that moment (its contributions are the rules that brought the lead there).

    `profile_at(t)` is the profile as known at t; it changes only at `profile_moments`
    (sorted), so the fit score is computed once per profile, not once per moment.
    """
    if compiled.model.qualification.mql is None or until < not_before:
        return None
    found: dict[float, LeadScore] = {}
    fits: dict[int, tuple[Mapping[str, Any], Any]] = {}

    def holds(moment: float) -> bool:
        epoch = bisect_right(profile_moments, moment)
        if epoch not in fits:
            profile = profile_at(moment)
            fits[epoch] = (profile, fit_part(compiled, profile))
        profile, fit = fits[epoch]
        result = score_state(compiled, profile, state, moment, fit=fit)
        found[moment] = result
        return result.mql

    candidates = candidate_moments(compiled, state, not_before, until, profile_moments)
    moment = first_moment(candidates, holds, not_before=not_before)
    return None if moment is None else (moment, found[moment])
