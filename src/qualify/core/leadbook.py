"""Applying Segment messages to leads and accounts in memory: identity, traits, state.

`LeadBook` is the one place where a message changes a lead. The stateless scorer fills one
with a whole file; the store fills one with the leads a batch touches, applies the batch and
writes back what changed. Both paths therefore agree by construction.

Traits merge per key and the later timestamp wins (ties: the larger messageId), so the
profile does not depend on arrival order either.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from qualify.core.activity import MAX_TEXT, ActivityEvent
from qualify.core.identity import IdentityGraph
from qualify.core.scoring import CompiledModel, FitPart, LeadScore, fit_part, score_state
from qualify.core.state import Hit, LeadState

__all__ = ["Account", "Applied", "LeadBook", "LeadRecord", "Traits"]

Stamp = tuple[float, str]  # (timestamp, messageId): the order in which trait values win

_REVISIONS = itertools.count(1)  # shared by all Traits: equal revisions mean equal contents


@dataclass(slots=True)
class Traits:
    """Trait values, each with the stamp of the message that set it (the latest wins) and
    `since`: the earliest time a message gave it that same value. Profiles as of a moment
    use `since`, so an identify that repeats a known value (SDKs send one on every page)
    does not make the trait look newer than it is."""

    values: dict[str, Any] = field(default_factory=dict)
    stamps: dict[str, Stamp] = field(default_factory=dict)
    since: dict[str, float] = field(default_factory=dict)
    # Taken anew from one counter whenever any of the three dicts is written (and when a
    # Traits is made), so whoever kept a revision knows the contents are unchanged without
    # copying them: the store compares it to skip rewriting a lead's profile columns.
    # Hence the dicts are written only here.
    revision: int = field(default_factory=lambda: next(_REVISIONS), compare=False, repr=False)

    def update(self, traits: dict[str, Any], stamp: Stamp) -> bool:
        changed = written = False
        for key, value in traits.items():
            current = self.stamps.get(key)
            same = current is not None and self.values[key] == value
            if current is None or current <= stamp:
                changed = changed or not same
                if not same:
                    self.since[key] = stamp[0]
                self.values[key] = value
                self.stamps[key] = stamp
                written = True
            elif same and stamp[0] < self.since[key]:
                self.since[key] = stamp[0]  # an older message with the same value: known
                changed = written = True  # earlier, so the profile as of some moments changed
        if written:
            self.revision = next(_REVISIONS)
        return changed

    def merge(self, other: Traits) -> None:
        for key, value in other.values.items():
            self.update({key: value}, (other.since[key], other.stamps[key][1]))
            self.update({key: value}, other.stamps[key])

    def known(self, as_of: float | None) -> dict[str, Any]:
        """The traits known at a moment (all of them when `as_of` is None)."""
        since = self.since
        if as_of is None or not since or max(since.values()) <= as_of:
            return dict(self.values)  # the usual case (scoring now): a copy in C
        return {k: v for k, v in self.values.items() if since[k] <= as_of}

    def to_json(self) -> dict[str, list[Any]]:
        return {k: [*self.stamps[k], self.since[k]] for k in self.stamps}

    @classmethod
    def from_json(cls, values: dict[str, Any], stamps: dict[str, list[Any]]) -> Traits:
        return cls(
            dict(values),
            {k: (v[0], v[1]) for k, v in stamps.items()},
            {k: v[2] if len(v) > 2 else v[0] for k, v in stamps.items()},
        )


@dataclass(slots=True)
class Account:
    account_id: str
    traits: Traits = field(default_factory=Traits)


@dataclass(slots=True)
class LeadRecord:
    lead_id: str
    state: LeadState
    traits: Traits = field(default_factory=Traits)
    account_id: str | None = None
    account_stamp: Stamp | None = None
    first_seen: float | None = None
    last_seen: float | None = None
    source: str | None = None  # first touch: utm/campaign source of the earliest message
    campaign: str | None = None
    source_stamp: Stamp | None = None
    # `LeadBook.fit`'s and `LeadBook.profile_moments`' memos, with what they depend on
    fit_memo: tuple[Any, ...] | None = field(default=None, compare=False, repr=False)
    moments_memo: tuple[Any, ...] | None = field(default=None, compare=False, repr=False)

    def saw(self, event: ActivityEvent) -> None:
        ts = event.timestamp
        if self.last_seen is None or self.first_seen is None:
            self.first_seen = self.last_seen = ts
        elif ts > self.last_seen:
            self.last_seen = ts
        elif ts < self.first_seen:
            self.first_seen = ts
        known = self.source_stamp
        if known is None or ts <= known[0]:  # only an earlier message can be the first touch
            stamp = (ts, event.message_id)
            if known is None or stamp < known:
                source, campaign = first_touch(event)
                if source is not None:
                    self.source, self.campaign, self.source_stamp = source, campaign, stamp

    def absorb(self, other: LeadRecord) -> None:
        """Merge another lead (an anonymous history) into this one."""
        self.state.merge(other.state)
        self.traits.merge(other.traits)
        if other.account_stamp is not None and (
            self.account_stamp is None or self.account_stamp < other.account_stamp
        ):
            self.account_id, self.account_stamp = other.account_id, other.account_stamp
        for ts in (other.first_seen, other.last_seen):
            if ts is not None:
                self.first_seen = ts if self.first_seen is None else min(self.first_seen, ts)
                self.last_seen = ts if self.last_seen is None else max(self.last_seen, ts)
        if other.source_stamp is not None and (
            self.source_stamp is None or other.source_stamp < self.source_stamp
        ):
            self.source, self.campaign = other.source, other.campaign
            self.source_stamp = other.source_stamp


def first_touch(event: ActivityEvent) -> tuple[str | None, str | None]:
    """Where a message says the lead came from: campaign context, UTM properties or traits
    (each kept to `MAX_TEXT` characters)."""
    campaign = event.context.get("campaign")
    if isinstance(campaign, dict) and campaign.get("source"):
        return _short(campaign["source"]), _short(campaign.get("name"))
    props = event.properties
    if props.get("utm_source"):
        return _short(props["utm_source"]), _short(props.get("utm_campaign"))
    traits = event.traits
    for key in ("lead_source", "source"):
        if traits.get(key):
            return _short(traits[key]), _short(traits.get("campaign"))
    return None, None


def _short(value: Any) -> str | None:
    return str(value)[:MAX_TEXT] if value else None


@dataclass(slots=True)
class Applied:
    lead_id: str
    touched: Sequence[int]  # engagement rules the message matched
    merged: tuple[tuple[str, str], ...]  # (from lead, into lead)
    profile_changed: bool
    # a group message that changed its account's traits: every member's profile changed
    account_changed: bool = False


class LeadBook:
    """Leads, accounts and the identity graph, as far as they are loaded."""

    def __init__(
        self,
        compiled: CompiledModel,
        graph: IdentityGraph | None = None,
        *,
        dedupe: bool = False,
    ) -> None:
        self.compiled = compiled
        self.graph = graph or IdentityGraph()
        self.seen: set[str] | None = set() if dedupe else None  # messageIds applied so far
        self.leads: dict[str, LeadRecord] = {}
        self.accounts: dict[str, Account] = {}
        self.removed: set[str] = set()  # leads merged away

    def lead(self, lead_id: str) -> LeadRecord:
        record = self.leads.get(lead_id)
        if record is None:
            record = LeadRecord(lead_id, self.compiled.new_state())
            self.leads[lead_id] = record
        return record

    def account(self, account_id: str) -> Account:
        account = self.accounts.get(account_id)
        if account is None:
            account = Account(account_id)
            self.accounts[account_id] = account
        return account

    def apply(self, event: ActivityEvent) -> Applied | None:
        """Apply one message; None when `dedupe` is on and its messageId was seen before (the
        store deduplicates against its events table instead)."""
        if self.seen is not None:
            if event.message_id in self.seen:
                return None
            self.seen.add(event.message_id)
        return self._apply(event)

    def _apply(self, event: ActivityEvent) -> Applied:
        if event.name:  # fast path: an event whose ids all point to one known lead
            lead_id = self.graph.settled(event)
            if lead_id is not None:
                record = self.leads.get(lead_id) or self.lead(lead_id)
                record.saw(event)
                return Applied(lead_id, self.compiled.apply(record.state, event), (), False)
        resolution = self.graph.resolve(event)
        for source, target in resolution.merges:
            merged = self.leads.pop(source, None)
            if merged is not None:
                self.lead(target).absorb(merged)
            self.removed.add(source)
        record = self.lead(resolution.lead_id)
        record.saw(event)
        stamp = (event.timestamp, event.message_id)
        touched: Sequence[int] = ()
        changed = bool(resolution.merges)
        account_changed = False
        if event.type == "identify":
            changed = record.traits.update(event.traits, stamp) or changed
        elif event.type == "group":
            assert event.group_id is not None
            account_changed = self.account(event.group_id).traits.update(event.traits, stamp)
            if record.account_stamp is None or record.account_stamp <= stamp:
                changed = changed or record.account_id != event.group_id
                record.account_id, record.account_stamp = event.group_id, stamp
            changed = changed or (account_changed and record.account_id == event.group_id)
        elif event.name:
            touched = self.compiled.apply(record.state, event)
        return Applied(resolution.lead_id, touched, resolution.merges, changed, account_changed)

    def apply_all(self, events: Iterable[ActivityEvent], *, chunk: int = 200_000) -> None:
        """Apply a stream of messages when only the leads' scores will be read.

        Identities, traits, accounts and rule hits end up exactly as `apply` leaves them, by
        a shorter way for the common message, one whose ids all point to one known lead: its
        hits are matched at once, while it is fresh in memory, and recorded lead by lead
        every `chunk` messages. A large file's leads are scattered in memory, and visiting
        each one once per chunk rather than once per message is what makes this faster;
        the order in which hits arrive does not change a lead's sorted lists, and a lead
        merged away passes its pending hits on. First and last seen and the first touch
        are not kept: scores do not read them. The book should start empty (as the
        stateless scorer's does): a lead the graph knows without a record gets its record
        when its hits are recorded.
        """
        seen = self.seen
        settled, match = self.graph.settled, self.compiled.match
        pending: dict[str, list[tuple[int, Hit]]] = {}
        count = 0
        for event in events:
            message_id = event.message_id
            if seen is not None:
                if message_id in seen:
                    continue
                seen.add(message_id)
            if event.name:
                lead_id = settled(event)
                if lead_id is not None:
                    matches = match(event)
                    if matches:
                        bucket = pending.get(lead_id)
                        if bucket is None:
                            pending[lead_id] = matches
                        else:
                            bucket.extend(matches)
                        count += 1
                        if count >= chunk:
                            self._record(pending)
                            count = 0
                    continue
            for source, target in self._apply(event).merged:
                moved = pending.pop(source, None)
                if moved:
                    pending.setdefault(target, []).extend(moved)
        self._record(pending)

    def _record(self, pending: dict[str, list[tuple[int, Hit]]]) -> None:
        leads = self.leads
        for lead_id, matches in pending.items():
            record = leads.get(lead_id) or self.lead(lead_id)
            record.state.record(matches)
        pending.clear()

    def profile(self, record: LeadRecord, as_of: float | None = None) -> dict[str, Any]:
        """What fit rules see: the lead's traits, with its account's traits under `account`.

        As of a moment, only what was known by then counts: traits (and the account link)
        whose winning message is later are left out, so a score never uses the future.
        """
        traits = record.traits.known(as_of)
        linked = record.account_id is not None and (
            as_of is None or record.account_stamp is None or record.account_stamp[0] <= as_of
        )
        if not linked:
            return traits
        assert record.account_id is not None
        account = self.accounts.get(record.account_id)
        account_traits = account.traits.known(as_of) if account else {}
        account_traits.setdefault("id", record.account_id)
        return {**traits, "account": account_traits}

    def fit(self, record: LeadRecord, as_of: float | None = None) -> FitPart:
        """`fit_part` of the lead's profile as of a moment.

        A lead is scored again and again (at each message, each transaction) at moments
        after its profile last changed, when the profile is the whole of it. So that fit is
        remembered on the record, with what it depends on: the traits' revisions, the
        account link, the model, and the moment from which the profile is whole.
        """
        account, depends = self._profile_depends(record)
        memo = record.fit_memo
        if (
            memo is not None
            and memo[0] is self.compiled
            and memo[1] == depends
            and (as_of is None or as_of >= memo[2])
        ):
            return memo[3]
        found = fit_part(self.compiled, self.profile(record, as_of))
        whole_from = max(record.traits.since.values(), default=-math.inf)
        if record.account_stamp is not None:
            whole_from = max(whole_from, record.account_stamp[0])
        if account is not None:
            whole_from = max(whole_from, *account.traits.since.values(), -math.inf)
        if as_of is None or as_of >= whole_from:
            record.fit_memo = (self.compiled, depends, whole_from, found)
        return found

    def _profile_depends(self, record: LeadRecord) -> tuple[Account | None, tuple[Any, ...]]:
        """The lead's account, and what its profile at any moment is made of: equal
        tuples, equal profiles (`Traits.revision`)."""
        account = self.accounts.get(record.account_id) if record.account_id is not None else None
        depends = (
            record.traits.revision,
            record.account_id,
            record.account_stamp,
            None if account is None else account.traits.revision,
        )
        return account, depends

    def score(self, record: LeadRecord, as_of: float) -> LeadScore:
        """The lead's score as of a moment (its fit from `fit`'s memo)."""
        return score_state(self.compiled, {}, record.state, as_of, fit=self.fit(record, as_of))

    def profile_moments(self, record: LeadRecord) -> list[float]:
        """The moments at which the lead's profile changed, sorted (remembered on the
        record as `fit` remembers its fit: the caller must not change the list)."""
        account, depends = self._profile_depends(record)
        memo = record.moments_memo
        if memo is not None and memo[0] == depends:
            return memo[1]
        moments = set(record.traits.since.values())
        if record.account_stamp is not None:
            moments.add(record.account_stamp[0])
            if account is not None:
                moments.update(account.traits.since.values())
        found = sorted(moments)
        record.moments_memo = (depends, found)
        return found
