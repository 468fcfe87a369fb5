"""The scoring-model language: YAML text → frozen, validated objects (no I/O here)."""

from __future__ import annotations

from qualify.model.durations import format_duration, parse_duration
from qualify.model.lifecycle import LifecycleSettings
from qualify.model.predicates import AllOf, AnyOf, Compare, Not, Predicate
from qualify.model.qualification import Criteria, Qualification
from qualify.model.routing import Assignment, Member, RoutingRule
from qualify.model.rules import EngagementRule, FitRule
from qualify.model.schema import json_schema
from qualify.model.scoring_model import ScoringModel, load_model

__all__ = [
    "AllOf",
    "AnyOf",
    "Assignment",
    "Compare",
    "Criteria",
    "EngagementRule",
    "FitRule",
    "LifecycleSettings",
    "Member",
    "Not",
    "Predicate",
    "Qualification",
    "RoutingRule",
    "ScoringModel",
    "format_duration",
    "json_schema",
    "load_model",
    "parse_duration",
]
