"""What the store does after a lead's state changed: score it, write the ledger, qualify it.

Shared by ingestion, model activation and refresh, so all three write the same ledger and
make the same lifecycle decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from qualify.core.leadbook import LeadBook, LeadRecord
from qualify.core.lifecycle import Stage, StageChanged, TransitionContext, can_qualify, take_action
from qualify.core.moments import qualification_moment
from qualify.core.scoring import CompiledModel, FitPart, LeadScore
from qualify.core.state import LeadState
from qualify.store.repository import LeadStatus

__all__ = ["Ledger", "apply_score", "qualify_if_due", "qualify_now", "qualify_record"]


@dataclass(slots=True)
class Ledger:
    """Collects ledger rows: each is the change of one rule's points for one lead."""

    version_id: int | None
    at: float
    rows: list[dict[str, Any]] = field(default_factory=list)

    def settle(
        self,
        lead_id: str,
        current: dict[str, float],
        new: Mapping[str, float],
        reason: str,
        message_id: str | None = None,
        only: set[str] | None = None,
    ) -> None:
        """Record every rule whose points differ from `current`, and update `current`."""
        if only is None:
            if new == current:  # the usual case, decided in C: nothing changed
                return
            names = current.keys() | new.keys()
        else:
            names = only
        for rule in sorted(names):
            before = current.get(rule, 0.0)
            after = new.get(rule, 0.0)
            if after == before:
                continue
            self.rows.append(
                {
                    "lead_id": lead_id,
                    "rule": rule,
                    "points": after - before,
                    "message_id": message_id,
                    "reason": reason,
                    "model_version_id": self.version_id,
                    "at": self.at,
                }
            )
            if after == 0.0:
                current.pop(rule, None)
            else:
                current[rule] = after


def apply_score(status: LeadStatus, result: LeadScore, version_id: int | None, at: float) -> None:
    status.fit = result.fit
    status.engagement = result.engagement
    status.score = result.score
    status.mql = result.mql
    status.pql = result.pql
    status.tier = result.tier
    status.grade = result.grade
    status.model_version_id = version_id
    status.state_version_id = version_id  # the caller scored the state it built
    status.scored_at = at


def qualify_if_due(
    compiled: CompiledModel,
    lead_id: str,
    fit_at: Callable[[float], FitPart],
    profile_moments: Sequence[float],
    state: LeadState,
    status: LeadStatus,
    *,
    since: float,
    now: float,
    model_version: str,
    check_now: bool = False,
) -> StageChanged | None:
    """Make the lead an MQL at the first moment since `since` its criteria held, if its
    stage allows; update `status` and return the transition.

    Between checks a score rises only at the lead's events, profile changes and lapsing
    negative points; `check_now` also checks `now` itself (a new model, time passing).
    """
    if status.stage not in (Stage.LEAD, Stage.NURTURE):
        return None
    requalify_after = compiled.model.lifecycle.requalify_after
    not_before = since
    also = [now] if check_now else []
    if status.stage is Stage.NURTURE and status.recycled_at is not None:
        # A recycled lead was not checked while it waited: look from the end of the wait.
        eligible = status.recycled_at + (requalify_after or 0.0)
        not_before = eligible
        also.append(eligible)  # criteria may already hold when the wait ends
    found = qualification_moment(
        compiled, fit_at, profile_moments, state, not_before, now, also=also
    )
    if found is None:
        return None
    return _qualify_at(compiled, lead_id, status, *found, model_version)


def qualify_now(
    compiled: CompiledModel, lead_id: str, status: LeadStatus, result: LeadScore, now: float
) -> StageChanged | None:
    """`qualify_if_due` for a lead scored only at `now` (a batch engine's result, without the
    lead's rule state): exact when only `now` is to be checked, as after a model change.
    Callers give the live engine the leads that need their history searched (a recycled
    lead's wait, negative points lapsing since the last score)."""
    if status.stage not in (Stage.LEAD, Stage.NURTURE) or not result.mql:
        return None
    assert status.stage is Stage.LEAD or status.recycled_at is None, (
        f"lead {lead_id} was recycled: when it qualifies again is found in its history, "
        "so the live engine must score it (qualify_if_due)"
    )
    return _qualify_at(compiled, lead_id, status, now, result, compiled.model.version)


def _qualify_at(
    compiled: CompiledModel,
    lead_id: str,
    status: LeadStatus,
    moment: float,
    result: LeadScore,
    model_version: str,
) -> StageChanged | None:
    requalify_after = compiled.model.lifecycle.requalify_after
    ctx = TransitionContext(lead_id, status.stage, moment, "", status.recycled_at, requalify_after)
    if not can_qualify(ctx):
        return None
    change = take_action(
        ctx,
        "qualify",
        actor="system",
        model_version=model_version,
        details={
            "score": result.score,
            "rules": {c.rule: c.points for c in result.contributions},
        },
    )
    status.stage = Stage.MQL
    status.stage_at = moment
    status.qualified_at = moment
    return change


def qualify_record(
    compiled: CompiledModel,
    book: LeadBook,
    record: LeadRecord,
    status: LeadStatus,
    *,
    since: float,
    now: float,
    check_now: bool = False,
) -> StageChanged | None:
    """`qualify_if_due` for a lead held in a `LeadBook` (its profile as of any moment)."""
    return qualify_if_due(
        compiled,
        record.lead_id,
        partial(book.fit, record),
        book.profile_moments(record),
        record.state,
        status,
        since=since,
        now=now,
        model_version=compiled.model.version,
        check_now=check_now,
    )
