"""The `lifecycle` section: the sales SLA and when recycled leads may qualify again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qualify.model.durations import parse_duration
from qualify.model.problems import Problems, describe

__all__ = ["LifecycleSettings", "parse_lifecycle"]

ON_BREACH = ("none", "reassign")


@dataclass(frozen=True, slots=True)
class LifecycleSettings:
    accept_within: float | None = None  # seconds; the SLA for accept/reject of an MQL
    on_breach: str = "none"
    requalify_after: float | None = None  # seconds; None: a recycled lead may requalify at once


def parse_lifecycle(value: Any, problems: Problems) -> LifecycleSettings:
    if value is None:
        return LifecycleSettings()
    path: tuple[Any, ...] = ("lifecycle",)
    if not problems.expect_mapping(path, value, "`lifecycle`"):
        return LifecycleSettings()
    problems.check_keys(path, value, ("sla", "recycle"), "key in `lifecycle`")
    accept_within = requalify_after = None
    on_breach = "none"
    sla = value.get("sla")
    if sla is not None and problems.expect_mapping((*path, "sla"), sla, "`sla`"):
        problems.check_keys((*path, "sla"), sla, ("accept_within", "on_breach"), "key in `sla`")
        accept_within = _duration(sla, "accept_within", (*path, "sla"), problems)
        if "on_breach" in sla:
            if sla["on_breach"] in ON_BREACH:
                on_breach = sla["on_breach"]
            else:
                problems.add((*path, "sla", "on_breach"), "`on_breach` must be one of: "
                             f"{', '.join(ON_BREACH)}, not {describe(sla['on_breach'])}")
    recycle = value.get("recycle")
    if recycle is not None and problems.expect_mapping((*path, "recycle"), recycle, "`recycle`"):
        problems.check_keys((*path, "recycle"), recycle, ("requalify_after",), "key in `recycle`")
        requalify_after = _duration(recycle, "requalify_after", (*path, "recycle"), problems)
    return LifecycleSettings(accept_within, on_breach, requalify_after)


def _duration(raw: dict[str, Any], key: str, path: tuple[Any, ...], problems: Problems) -> float | None:
    if key not in raw:
        return None
    seconds = parse_duration(raw[key])
    if seconds is None:
        problems.add((*path, key), f"`{key}` must be a duration such as `24h` or `30d`, "
                     f"not {describe(raw[key])}")
    return seconds
