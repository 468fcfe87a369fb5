"""When did a lead's MQL criteria first hold? Exact moments from a lead's state.

A score is a function of time: it rises only when a matching event happens or a negative
contribution expires, so criteria can only start to hold at those moments (and at the moment
a recycled lead becomes eligible again). We check them in order and stop at the first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from qualify.core.qualification import first_moment
from qualify.core.scoring import CompiledModel, LeadScore, fit_part, score_state
from qualify.core.state import LeadState

__all__ = ["candidate_moments", "qualification_moment"]


def candidate_moments(
    compiled: CompiledModel, state: LeadState, not_before: float, until: float
) -> set[float]:
    """Every moment in [not_before, until] at which the lead's score may have risen."""
    moments = {until, not_before}
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
    profile: Mapping[str, Any],
    state: LeadState,
    not_before: float,
    until: float,
) -> tuple[float, LeadScore] | None:
    """The first moment in [not_before, until] at which the MQL criteria hold, with the
    score at that moment (its contributions are the rules that brought the lead there)."""
    if compiled.model.qualification.mql is None or until < not_before:
        return None
    found: dict[float, LeadScore] = {}
    fit = fit_part(compiled, profile)

    def holds(moment: float) -> bool:
        result = score_state(compiled, profile, state, moment, fit=fit)
        found[moment] = result
        return result.mql

    moment = first_moment(
        candidate_moments(compiled, state, not_before, until), holds, not_before=not_before
    )
    return None if moment is None else (moment, found[moment])
