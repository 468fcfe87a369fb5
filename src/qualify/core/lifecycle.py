"""The lead lifecycle as data: stages, the actions that move between them, and guards.

Stages only move forward (lead → mql → sql → opportunity → customer), except recycle: sales
may send a lead back to `nurture` with a reason, and it may qualify again after the model's
`requalify_after`. Guards are named pure functions of a `TransitionContext`, checked when an
action is taken; an illegal action raises `TransitionNotAllowed` naming lead, stage and action.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from qualify.errors import TransitionNotAllowed

__all__ = [
    "ACTIONS",
    "Action",
    "Stage",
    "StageChanged",
    "TransitionContext",
    "allowed_actions",
    "can_qualify",
    "take_action",
]

SYSTEM = "system"
BANT_FIELDS = ("budget", "authority", "need", "timeline")


class Stage(StrEnum):
    LEAD = "lead"
    MQL = "mql"
    SQL = "sql"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    NURTURE = "nurture"
    DISQUALIFIED = "disqualified"


@dataclass(frozen=True, slots=True)
class TransitionContext:
    """What guards may look at: the lead's stage and history, the request, and the time."""

    lead_id: str
    stage: Stage
    at: float
    reason: str = ""
    recycled_at: float | None = None  # when the lead last went to nurture
    requalify_after: float | None = None  # seconds, from the model's lifecycle section


Guard = Callable[[TransitionContext], str | None]  # None when the guard passes, else why not


def reason_given(ctx: TransitionContext) -> str | None:
    return None if ctx.reason.strip() else "a reason is required"


def requalify_period_over(ctx: TransitionContext) -> str | None:
    if ctx.stage is not Stage.NURTURE or ctx.requalify_after is None or ctx.recycled_at is None:
        return None
    if ctx.at >= ctx.recycled_at + ctx.requalify_after:
        return None
    return "recycled leads re-qualify only after the model's `requalify_after`"


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    sources: frozenset[Stage]
    target: Stage
    guards: tuple[Guard, ...] = ()
    by_system: bool = False


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action(
            "qualify",
            frozenset({Stage.LEAD, Stage.NURTURE}),
            Stage.MQL,
            (requalify_period_over,),
            by_system=True,
        ),
        Action("accept", frozenset({Stage.MQL}), Stage.SQL),
        Action("reject", frozenset({Stage.MQL, Stage.SQL}), Stage.NURTURE, (reason_given,)),
        Action(
            "disqualify",
            frozenset({Stage.LEAD, Stage.MQL, Stage.SQL, Stage.OPPORTUNITY, Stage.NURTURE}),
            Stage.DISQUALIFIED,
            (reason_given,),
        ),
        Action("opportunity", frozenset({Stage.SQL}), Stage.OPPORTUNITY),
        Action("won", frozenset({Stage.SQL, Stage.OPPORTUNITY}), Stage.CUSTOMER),
        Action("lost", frozenset({Stage.OPPORTUNITY}), Stage.NURTURE, (reason_given,)),
    )
}


@dataclass(frozen=True, slots=True)
class StageChanged:
    """A domain event: one lifecycle transition, with who, when, why and the model version."""

    lead_id: str
    from_stage: Stage
    to_stage: Stage
    action: str
    actor: str
    at: float
    reason: str = ""
    model_version: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


def allowed_actions(stage: Stage, *, include_system: bool = False) -> list[str]:
    return [
        name
        for name, action in ACTIONS.items()
        if stage in action.sources and (include_system or not action.by_system)
    ]


def can_qualify(ctx: TransitionContext) -> bool:
    """Whether criteria holding now would make this lead an MQL (stage and guards allow)."""
    action = ACTIONS["qualify"]
    return ctx.stage in action.sources and all(g(ctx) is None for g in action.guards)


def take_action(
    ctx: TransitionContext,
    action_name: str,
    *,
    actor: str,
    model_version: str = "",
    details: Mapping[str, Any] | None = None,
) -> StageChanged:
    """Check an action against the stage and guards; return the transition it makes."""
    action = ACTIONS.get(action_name)
    allowed = allowed_actions(ctx.stage)
    if action is None:
        raise TransitionNotAllowed(ctx.lead_id, ctx.stage, action_name, allowed, "unknown action")
    if ctx.stage not in action.sources:
        raise TransitionNotAllowed(ctx.lead_id, ctx.stage, action_name, allowed)
    for guard in action.guards:
        why = guard(ctx)
        if why is not None:
            raise TransitionNotAllowed(ctx.lead_id, ctx.stage, action_name, allowed, why)
    extra = dict(details or {})
    unknown = set(extra) - set(BANT_FIELDS) - {"amount", "rules", "score"}
    if unknown:
        raise TransitionNotAllowed(
            ctx.lead_id, ctx.stage, action_name, allowed, f"unknown detail {sorted(unknown)[0]!r}"
        )
    return StageChanged(
        lead_id=ctx.lead_id,
        from_stage=ctx.stage,
        to_stage=action.target,
        action=action_name,
        actor=actor,
        at=ctx.at,
        reason=ctx.reason.strip(),
        model_version=model_version,
        details=extra,
    )
