"""The pure domain: predicates, scoring, identity, lifecycle. No I/O is imported here."""

from __future__ import annotations

from qualify.core.activity import ActivityEvent, decode_message, format_time, parse_time
from qualify.core.identity import IdentityGraph, Resolution
from qualify.core.lifecycle import Stage, StageChanged, TransitionContext, take_action
from qualify.core.scoring import CompiledModel, Contribution, LeadScore, evaluate, score_state
from qualify.core.state import LeadState

__all__ = [
    "ActivityEvent",
    "CompiledModel",
    "Contribution",
    "IdentityGraph",
    "LeadScore",
    "LeadState",
    "Resolution",
    "Stage",
    "StageChanged",
    "TransitionContext",
    "decode_message",
    "evaluate",
    "format_time",
    "parse_time",
    "score_state",
    "take_action",
]
