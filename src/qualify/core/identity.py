"""Identity resolution: which lead a Segment message is about, and which leads merge.

Segment messages name a person by `userId` (known) and/or `anonymousId` (a browser before
sign-up). An `alias` (previousId → userId), or an `identify` carrying both ids, says the two
are one person: the anonymous history merges into the known lead. Lead ids are the userId for
known leads and `anon:<anonymousId>` for anonymous ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from qualify.core.activity import ANON_PREFIX, ActivityEvent

__all__ = ["ANON_PREFIX", "IdentityGraph", "Resolution"]

USER, ANON = "user", "anon"


@dataclass(slots=True)
class Resolution:
    lead_id: str
    merges: tuple[tuple[str, str], ...] = ()  # (from lead, into lead), in order


class IdentityGraph:
    """Maps (kind, id) keys to lead ids; merging repoints every key of the merged lead.

    The store loads the part of the graph a batch needs and persists what changed, so the
    graph only has to be right for the keys it was given.
    """

    def __init__(self, keys: dict[tuple[str, str], str] | None = None) -> None:
        # One dict per kind: lookups by a plain text id are several times faster than by a
        # (kind, id) tuple, and every message is looked up.
        self.users: dict[str, str] = {}
        self.anonymous: dict[str, str] = {}
        self.members: dict[str, set[tuple[str, str]]] = {}
        self.loaded: set[tuple[str, str]] = set()  # keys that came from the store
        self.load(keys or {})

    def load(self, keys: dict[tuple[str, str], str]) -> None:
        """Add keys read from the store; keys the graph already knows keep their lead."""
        for key, lead in keys.items():
            table = self._table(key[0])
            if key[1] not in table:
                table[key[1]] = lead
                self.members.setdefault(lead, set()).add(key)
                self.loaded.add(key)

    def forget(self, keys: set[tuple[str, str]]) -> None:
        """Drop these keys (another process changed where they lead): looked up anew when
        a message names them."""
        for key in keys:
            lead = self._table(key[0]).pop(key[1], None)
            if lead is not None:
                self.members.get(lead, set()).discard(key)
        self.loaded -= keys

    def _table(self, kind: str) -> dict[str, str]:
        return self.users if kind == USER else self.anonymous

    def lead_of(self, kind: str, value: str) -> str | None:
        return self._table(kind).get(value)

    def _claim(self, key: tuple[str, str], lead: str) -> None:
        self._table(key[0])[key[1]] = lead
        self.members.setdefault(lead, set()).add(key)

    def _merge(self, source: str, target: str, merges: list[tuple[str, str]]) -> None:
        for key in self.members.pop(source, set()):
            self._table(key[0])[key[1]] = target
            self.members.setdefault(target, set()).add(key)
        merges.append((source, target))

    def _known(self, user_id: str) -> str:
        lead = self.lead_of(USER, user_id)
        if lead is None:
            lead = user_id
            self._claim((USER, user_id), lead)
        return lead

    def settled(self, event: ActivityEvent) -> str | None:
        """The lead of a message that changes no identity — every id it carries already
        points to that one lead — or None when it needs `resolve`. Checked for every
        message ingested or scored, so it is kept to two lookups."""
        return self.settled_ids(event.user_id, event.anonymous_id)

    def settled_ids(self, user: str | None, anonymous: str | None) -> str | None:
        """`settled` for a message's ids, when the message itself is not at hand."""
        by_user = self.users.get(user) if user is not None else None
        by_anonymous = self.anonymous.get(anonymous) if anonymous is not None else None
        lead_id = by_user or by_anonymous
        if (
            lead_id is not None
            and (user is None or by_user == lead_id)
            and (anonymous is None or by_anonymous == lead_id)
        ):
            return lead_id
        return None

    def resolve(self, event: ActivityEvent) -> Resolution:
        """The lead a message belongs to, after any merge it implies."""
        merges: list[tuple[str, str]] = []
        if event.type == "alias":
            assert event.user_id is not None and event.previous_id is not None
            target = self._known(event.user_id)
            previous = self.lead_of(USER, event.previous_id) or self.lead_of(
                ANON, event.previous_id
            )
            if previous is None:  # unseen so far: whichever kind it turns up as, it is them
                self._claim((USER, event.previous_id), target)
                self._claim((ANON, event.previous_id), target)
            elif previous != target:
                self._merge(previous, target, merges)
            return Resolution(target, tuple(merges))
        if event.user_id is not None:
            target = self._known(event.user_id)
            if event.anonymous_id is not None:
                anonymous = self.lead_of(ANON, event.anonymous_id)
                if anonymous is None:
                    self._claim((ANON, event.anonymous_id), target)
                elif anonymous != target:
                    self._merge(anonymous, target, merges)
            return Resolution(target, tuple(merges))
        assert event.anonymous_id is not None
        lead = self.lead_of(ANON, event.anonymous_id)
        if lead is None:
            lead = ANON_PREFIX + event.anonymous_id
            self._claim((ANON, event.anonymous_id), lead)
        return Resolution(lead, ())
