"""Scoring a file of messages without a database: `qualify score`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from qualify.core.activity import ActivityEvent
from qualify.core.leadbook import LeadBook
from qualify.core.scoring import CompiledModel, LeadScore, score_state

__all__ = ["score_events"]


def score_events(
    compiled: CompiledModel, events: Iterable[ActivityEvent], as_of: float, *, explain: bool = True
) -> Iterator[tuple[str, LeadScore, dict[str, Any]]]:
    """(lead id, score, profile) for every lead the messages name, in first-seen order."""
    book = LeadBook(compiled, dedupe=True)
    book.apply_all(events)
    for lead_id, record in book.leads.items():
        profile = book.profile(record, as_of)
        yield lead_id, score_state(compiled, profile, record.state, as_of, explain=explain), profile
