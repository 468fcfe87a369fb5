"""A lead's incremental scoring state: for each engagement rule, the events it matched.

The state is what makes scoring incremental and exact at once. Applying an event touches only
the rules whose event names it carries; each rule keeps its own matching events sorted by
(timestamp, messageId), so late events slot into place and windows, distinct counts, `once`,
expiry and caps stay exact without going back to the lead's history. Two states merge (when an
anonymous visitor turns out to be a known lead) by merging these lists.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable
from typing import Any

import orjson

__all__ = ["Hit", "LeadState"]

# (timestamp, messageId, the normalised `distinct` value or None)
Hit = tuple[float, str, Any]


def _order(hit: Hit) -> tuple[float, str]:
    return hit[0], hit[1]


class LeadState:
    """Matching events per engagement rule, each list sorted by (timestamp, messageId)."""

    __slots__ = ("hits",)

    def __init__(self, rule_count: int, hits: list[list[Hit]] | None = None) -> None:
        self.hits: list[list[Hit]] = hits if hits is not None else [[] for _ in range(rule_count)]

    def add(self, rule: int, hit: Hit) -> bool:
        """Record a matching event; False when the rule already holds it at that time.

        Callers apply each messageId once (the store checks its events table, `LeadBook`
        keeps the ids it saw); this check only keeps a merge or a replay from doubling.
        """
        hits = self.hits[rule]
        if not hits or _order(hits[-1]) < _order(hit):
            hits.append(hit)  # the common case: events arrive in order
            return True
        if hits[-1] == hit or any(h[1] == hit[1] for h in hits):
            return False
        insort(hits, hit, key=_order)
        return True

    def record(self, matches: Iterable[tuple[int, Hit]]) -> list[int]:
        """Record (rule, hit) pairs; return the rules that took a hit anew.

        The hot path of scoring: `add` is inlined for a hit later than the rule's last.
        """
        touched = []
        all_hits = self.hits
        for rule, hit in matches:
            hits = all_hits[rule]
            if not hits or hits[-1][0] < hit[0]:
                hits.append(hit)
                touched.append(rule)
            elif self.add(rule, hit):
                touched.append(rule)
        return touched

    def merge(self, other: LeadState) -> None:
        """Take in another lead's matches (identity merge); duplicates count once."""
        for rule, hits in enumerate(other.hits):
            for hit in hits:
                self.add(rule, hit)

    def to_json(self) -> bytes:
        return orjson.dumps(self.hits)

    @classmethod
    def from_json(cls, data: bytes | str | None, rule_count: int) -> LeadState:
        if not data:
            return cls(rule_count)
        raw = orjson.loads(data)
        if len(raw) != rule_count:
            raise ValueError("state was saved for a different model; rescore the lead")
        return cls(rule_count, [[(h[0], h[1], h[2]) for h in hits] for hits in raw])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LeadState) and self.hits == other.hits

    __hash__ = None  # type: ignore[assignment]
