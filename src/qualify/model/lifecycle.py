"""The `lifecycle` section: the sales SLA and when recycled leads may qualify again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    problems.check_keys(path, value, ("sla", "recycle"), "in `lifecycle`")
    accept_within = requalify_after = None
    on_breach = "none"
    sla = value.get("sla")
    if sla is not None and problems.expect_mapping((*path, "sla"), sla, "`sla`"):
        problems.check_keys((*path, "sla"), sla, ("accept_within", "on_breach"), "in `sla`")
        accept_within = problems.duration(sla, "accept_within", (*path, "sla"))
        if "on_breach" in sla:
            if sla["on_breach"] in ON_BREACH:
                on_breach = sla["on_breach"]
            else:
                problems.add(
                    (*path, "sla", "on_breach"),
                    "`on_breach` must be one of: "
                    f"{', '.join(ON_BREACH)}, not {describe(sla['on_breach'])}",
                )
    recycle = value.get("recycle")
    if recycle is not None and problems.expect_mapping((*path, "recycle"), recycle, "`recycle`"):
        problems.check_keys((*path, "recycle"), recycle, ("requalify_after",), "in `recycle`")
        requalify_after = problems.duration(recycle, "requalify_after", (*path, "recycle"))
    return LifecycleSettings(accept_within, on_breach, requalify_after)
