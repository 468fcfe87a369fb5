"""A whole scoring model: YAML text in, one frozen, validated `ScoringModel` out.

`load_model` never stops at the first problem: it parses everything it can and raises one
`ModelError` that lists every problem, each at its line and column.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from qualify.errors import ModelError
from qualify.model.lifecycle import LifecycleSettings, parse_lifecycle
from qualify.model.problems import Problems, describe
from qualify.model.qualification import Qualification, parse_qualification
from qualify.model.routing import RoutingRule, parse_routing
from qualify.model.rules import EngagementRule, FitRule, parse_engagement_rules, parse_fit_rules
from qualify.model.source import load_located

__all__ = ["TOP_LEVEL_KEYS", "ScoringModel", "load_model"]

TOP_LEVEL_KEYS = (
    "name",
    "version",
    "description",
    "fit",
    "engagement",
    "decay",
    "qualification",
    "lifecycle",
    "routing",
)


@dataclass(frozen=True, slots=True)
class ScoringModel:
    name: str
    version: str
    fit: tuple[FitRule, ...]
    engagement: tuple[EngagementRule, ...]
    qualification: Qualification
    lifecycle: LifecycleSettings
    routing: tuple[RoutingRule, ...]
    half_life: float | None = None  # seconds; engagement decay
    description: str = ""
    source: str = ""  # the YAML text it was parsed from, stored with every version

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]

    @property
    def rule_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.fit) + tuple(r.name for r in self.engagement)


def load_model(text: str, filename: str = "<model>") -> ScoringModel:
    """Parse and validate a model file's text; raise `ModelError` listing every problem."""
    doc, syntax = load_located(text)
    if doc is None:
        raise ModelError(filename, text, syntax)
    problems = Problems(doc)
    problems.items.extend(syntax)
    raw = doc.value
    if not isinstance(raw, dict):
        problems.add(
            (), f"a model file is a mapping with at least `name` and `version`, not {describe(raw)}"
        )
        raise ModelError(filename, text, problems.items)
    problems.check_keys((), raw, TOP_LEVEL_KEYS, "at the top level")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        problems.add(("name",) if "name" in raw else (), "the model needs a `name` (a text)")
        name = ""
    version = raw.get("version")
    if isinstance(version, int | float) and not isinstance(version, bool):
        version = doc.texts.get(("version",), str(version))  # `1.10` stays 1.10, not 1.1
    if not isinstance(version, str | int | float) or isinstance(version, bool) or version == "":
        problems.add(
            ("version",) if "version" in raw else (),
            "the model needs a `version` (e.g. `version: 1`); it is stored with every score change",
        )
        version = ""
    fit = parse_fit_rules(raw.get("fit"), problems)
    engagement = parse_engagement_rules(raw.get("engagement"), problems)
    _check_unique_names(fit, engagement, problems)
    names = {r.name for r in fit} | {r.name for r in engagement}
    qualification = parse_qualification(
        raw.get("qualification"), problems, {r.name for r in fit}, names
    )
    half_life = _decay(raw.get("decay"), problems)
    lifecycle = parse_lifecycle(raw.get("lifecycle"), problems)
    routing = parse_routing(raw.get("routing"), problems)
    if problems.items:
        raise ModelError(filename, text, problems.items)
    description = raw.get("description")
    return ScoringModel(
        name=name,
        version=str(version),
        fit=fit,
        engagement=engagement,
        qualification=qualification,
        lifecycle=lifecycle,
        routing=routing,
        half_life=half_life,
        description=description if isinstance(description, str) else "",
        source=text,
    )


def _check_unique_names(
    fit: tuple[FitRule, ...], engagement: tuple[EngagementRule, ...], problems: Problems
) -> None:
    seen: dict[str, tuple[Any, ...]] = {}
    rules: list[tuple[str, tuple[Any, ...]]] = [(r.name, ("fit", i)) for i, r in enumerate(fit)] + [
        (r.name, ("engagement", i)) for i, r in enumerate(engagement)
    ]
    for name, path in rules:
        if not name:
            continue
        if name in seen:
            first = problems.doc.at((*seen[name], "name"))
            problems.add(
                (*path, "name"),
                f"duplicate rule name `{name}` (first used on line "
                f"{first.line}); rule names must be unique, explanations show them",
            )
        else:
            seen[name] = path


def _decay(value: Any, problems: Problems) -> float | None:
    if value is None:
        return None
    if not problems.expect_mapping(("decay",), value, "`decay`"):
        return None
    problems.check_keys(("decay",), value, ("engagement_half_life",), "in `decay`")
    return problems.duration(value, "engagement_half_life", ("decay",))
