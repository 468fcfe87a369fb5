"""How the CLI shows things: Rich tables for people, JSON for programs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from qualify.core.activity import format_time

__all__ = ["console", "err", "points", "print_json", "when"]

# Piped output (a file, CI logs) gets a wide page instead of Rich's 80 columns, so tables of
# leads and reasons stay one line per lead; $COLUMNS still wins when it is set.
console = Console(
    highlight=False, width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 140
)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    option = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS  # column names are str subclasses
    sys.stdout.buffer.write(orjson.dumps(value, option=option) + b"\n")
    sys.stdout.flush()


def points(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def when(seconds: float | None) -> str:
    return format_time(seconds)[:16].replace("T", " ") if seconds else ""


def leads_table(rows: Sequence[Mapping[str, Any]], title: str) -> Table:
    """Leads with their scores; `qualified` is when each last became an MQL."""
    table = Table(title=title, title_justify="left")
    for name, justify in (
        ("lead", "left"),
        ("stage", "left"),
        ("score", "right"),
        ("fit", "right"),
        ("engagement", "right"),
        ("tier", "left"),
        ("grade", "left"),
        ("source", "left"),
        ("qualified", "left"),
        ("routed to", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["stage"]),
            points(row["score"]),
            points(row["fit"]),
            points(row["engagement"]),
            row["tier"] or "",
            row["grade"] or "",
            row["source"] or "",
            when(row["qualified_at"]),
            routed_to(row),
        )
    return table


def routed_to(row: Mapping[str, Any]) -> str:
    """Where routing sent a lead: its owner, its nurture campaign, or that none could."""
    kind = row.get("routing")
    if kind == "assign":
        return str(row.get("owner") or "")
    if kind == "nurture":
        return f"nurture: {row.get('nurture_campaign')}"
    return "unrouted" if kind == "unrouted" else ""


def reasons(contributions: Iterable[Mapping[str, Any]], limit: int = 4) -> str:
    """The strongest reasons, e.g. `whitepaper download +52, decision maker +20`."""
    ranked = sorted(contributions, key=lambda c: -abs(c["points"]))[:limit]
    return ", ".join(f"{c['rule']} {c['points']:+.0f}" for c in ranked)
