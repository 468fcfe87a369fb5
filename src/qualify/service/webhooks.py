"""Outbound webhooks: subscriptions, the transactional outbox, and delivery.

A change and the webhook rows it causes are written in one transaction (`Outbox`), so a
receiver hears of every MQL, routing, stage change and SLA breach the store holds, and of
nothing it does not. A delivery worker (a thread in each `qualify serve` worker, or
`qualify worker`) sends the rows: at least once, with exponential backoff and jitter, a
lead's events to one subscription strictly in order (a row is sent only when every earlier
row of that lead and subscription was delivered or given up), and a row that fails
`max_attempts` times is dead until replayed.

Each request is signed like Stripe's: header `Qualify-Signature: t=<unix time>,v1=<hex>`
where `<hex>` is HMAC-SHA256 of `<unix time>.<body>` with the subscription's secret
(`verify_signature` shows how a receiver checks it).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from sqlalchemy import Connection, Engine, func, select, update

from qualify.core.activity import format_time
from qualify.errors import QualifyError, SubscriptionNotFound
from qualify.store import repository as repo
from qualify.store.database import writing
from qualify.store.tables import webhook_outbox, webhook_subscriptions

__all__ = [
    "EVENT_TYPES",
    "DeliveryPolicy",
    "DeliveryWorker",
    "Outbox",
    "add_subscription",
    "deliver_due",
    "list_subscriptions",
    "remove_subscription",
    "replay",
    "sign",
    "verify_signature",
]

log = logging.getLogger("qualify.webhooks")

EVENT_TYPES = (
    "lead.mql",
    "lead.pql",
    "lead.routed",
    "lead.stage_changed",
    "lead.sla_breached",
    "lead.score_changed",
)
SIGNATURE_HEADER = "Qualify-Signature"


def sign(secret: str, body: bytes, at: int) -> str:
    """The signature header's value for a body sent at `at` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def verify_signature(
    secret: str, body: bytes, header: str, *, now: float | None = None, tolerance: float = 300
) -> bool:
    """What a receiver does: recompute the HMAC of `t.body`, compare in constant time, and
    refuse timestamps older than `tolerance` seconds (replayed requests)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        at = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - at) > tolerance:
        return False
    expected = sign(secret, body, at).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


# --- subscriptions -------------------------------------------------------------------------


def _check_events(events: Iterable[str]) -> list[str]:
    chosen = []
    for name in events:
        name = name.strip()
        if not name:
            continue
        if name not in EVENT_TYPES:
            from qualify.model.problems import near_miss

            guess = near_miss(name, EVENT_TYPES)
            hint = f"did you mean `{guess}`?" if guess else f"use {', '.join(EVENT_TYPES)}"
            raise QualifyError(f"unknown webhook event `{name}`; {hint}")
        chosen.append(name)
    if not chosen:
        raise QualifyError(f"name at least one event: {', '.join(EVENT_TYPES)}")
    return sorted(set(chosen))


def add_subscription(
    engine: Engine,
    url: str,
    events: Iterable[str],
    *,
    created_by: str,
    min_score_change: float = 0.0,
    secret: str | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Subscribe a URL to lead events; the answer holds the signing secret."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise QualifyError(f"`{url}` is not an http(s) URL")
    if any(c.isspace() for c in url):
        raise QualifyError(f"`{url}` is not a URL: it holds a space")
    if min_score_change < 0:
        raise QualifyError("`min_score_change` cannot be negative")
    values = {
        "url": url,
        "events": _check_events(events),
        "secret": secret or "whsec_" + secrets.token_urlsafe(24),
        "min_score_change": min_score_change,
        "active": True,
        "created_at": clock(),
        "created_by": created_by,
    }
    with writing(engine) as conn:  # bumps the generation: ingestion reads subscriptions again
        found = conn.execute(webhook_subscriptions.insert().values(values))
        (new_id,) = found.inserted_primary_key or (None,)
    return {"id": new_id, **values}


def list_subscriptions(engine: Engine) -> list[dict[str, Any]]:
    """Subscriptions with delivery counts by state (never their secrets)."""
    with engine.connect() as conn:
        subs = [dict(r._mapping) for r in conn.execute(select(webhook_subscriptions))]
        counts: dict[int, dict[str, int]] = {}
        query = select(
            webhook_outbox.c.subscription_id, webhook_outbox.c.state, func.count()
        ).group_by(webhook_outbox.c.subscription_id, webhook_outbox.c.state)
        for sub_id, state, count in conn.execute(query):
            counts.setdefault(sub_id, {})[state] = count
    out = []
    for sub in sorted(subs, key=lambda s: s["id"]):
        sub.pop("secret")
        sub["deliveries"] = {s: counts.get(sub["id"], {}).get(s, 0) for s in STATES}
        out.append(sub)
    return out


def remove_subscription(engine: Engine, sub_id: int) -> None:
    """Stop a subscription: nothing more is queued or sent for it (its pending deliveries
    are cancelled)."""
    with writing(engine) as conn:  # bumps the generation: ingestion reads subscriptions again
        done = conn.execute(
            update(webhook_subscriptions)
            .where(webhook_subscriptions.c.id == sub_id, webhook_subscriptions.c.active)
            .values(active=False)
        )
        if done.rowcount == 0:
            raise SubscriptionNotFound(sub_id)
        conn.execute(
            update(webhook_outbox)
            .where(webhook_outbox.c.subscription_id == sub_id, webhook_outbox.c.state == "pending")
            .values(state="cancelled", lease_until=None, lease_token=None)
        )


def replay(
    engine: Engine,
    *,
    subscription: int | None = None,
    delivery: int | None = None,
    dead_only: bool = True,
    clock: Callable[[], float] = time.time,
) -> int:
    """Queue deliveries of an active subscription again (by default the dead ones). A
    replayed delivery is sent after the lead's deliveries still pending, but may arrive
    after later ones that were delivered while it was dead."""
    query = update(webhook_outbox).values(
        state="pending", attempts=0, next_attempt_at=clock(), lease_until=None, lease_token=None
    )
    query = query.where(
        webhook_outbox.c.state == "dead"
        if dead_only
        else webhook_outbox.c.state.in_(("dead", "delivered"))
    )
    active = select(webhook_subscriptions.c.id).where(webhook_subscriptions.c.active)
    query = query.where(webhook_outbox.c.subscription_id.in_(active))
    if subscription is not None:
        query = query.where(webhook_outbox.c.subscription_id == subscription)
    if delivery is not None:
        query = query.where(webhook_outbox.c.id == delivery)
    with writing(engine, leads=False) as conn:
        if subscription is not None:
            found = conn.execute(
                select(webhook_subscriptions.c.active).where(
                    webhook_subscriptions.c.id == subscription
                )
            ).scalar()
            if not found:
                raise SubscriptionNotFound(subscription)
        return conn.execute(query).rowcount or 0


# --- the outbox ----------------------------------------------------------------------------

STATES = ("pending", "delivered", "dead", "cancelled")


def active_subscriptions(conn: Connection) -> list[dict[str, Any]]:
    """What an outbox needs of each active subscription. Adding or removing one bumps the
    store's write generation, so ingestion may keep this list while no one else writes."""
    query = select(
        webhook_subscriptions.c.id,
        webhook_subscriptions.c.events,
        webhook_subscriptions.c.min_score_change,
    ).where(webhook_subscriptions.c.active)
    return [dict(r._mapping) for r in conn.execute(query)]


@dataclass(slots=True)
class Outbox:
    """Webhook rows for the changes of one transaction, written with them."""

    subscriptions: list[dict[str, Any]]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def start(cls, conn: Connection) -> Outbox:
        return cls(active_subscriptions(conn))

    def wants(self, event_type: str) -> bool:
        return any(event_type in s["events"] for s in self.subscriptions)

    def emit(
        self,
        event_type: str,
        lead: Mapping[str, Any],
        data: Mapping[str, Any],
        at: float,
        *,
        score_change: float | None = None,
    ) -> None:
        """Queue one event for every subscription that wants it."""
        for sub in self.subscriptions:
            if event_type not in sub["events"]:
                continue
            if score_change is not None and abs(score_change) < max(sub["min_score_change"], 1e-9):
                continue
            self.rows.append(
                {
                    "subscription_id": sub["id"],
                    "lead_id": lead["id"],
                    "event_type": event_type,
                    "payload": {
                        "type": event_type,
                        "created_at": format_time(at),
                        "lead": dict(lead),
                        "data": dict(data),
                    },
                    "created_at": at,
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt_at": at,
                }
            )

    def write(self, conn: Connection, owners: Mapping[str, str] | None = None) -> None:
        """Insert the rows, in the order the changes happened (ids keep that order)."""
        if owners:
            for row in self.rows:
                row["lead_id"] = owners.get(row["lead_id"], row["lead_id"])
                row["payload"]["lead"]["id"] = row["lead_id"]
        if self.rows:
            conn.execute(webhook_outbox.insert(), self.rows)
        self.rows = []


def lead_snapshot(lead_id: str, status: repo.LeadStatus) -> dict[str, Any]:
    """What every webhook says about the lead: where it stands after the change."""
    return {
        "id": lead_id,
        "stage": str(status.stage),
        "score": status.score,
        "fit": status.fit,
        "engagement": status.engagement,
        "mql": status.mql,
        "pql": status.pql,
        "tier": status.tier,
        "grade": status.grade,
        "owner": status.owner,
        "team": status.team,
    }


def emit_transition(outbox: Outbox, change: Any, lead: Mapping[str, Any]) -> None:
    """A stage change, and `lead.mql` when it is a qualification."""
    data = {
        "from_stage": str(change.from_stage),
        "to_stage": str(change.to_stage),
        "action": change.action,
        "actor": change.actor,
        "reason": change.reason,
        "at": format_time(change.at),
    }
    outbox.emit("lead.stage_changed", lead, data, change.at)
    if change.action == "qualify":
        outbox.emit("lead.mql", lead, {**data, "score": change.details.get("score")}, change.at)


def emit_lead_changes(
    outbox: Outbox,
    lead_id: str,
    status: repo.LeadStatus,
    before: tuple[float, bool],
    change: Any,
    at: float,
) -> None:
    """What scoring a lead changed: its score (thresholded per subscription), PQL flag,
    and stage (a qualification)."""
    lead = lead_snapshot(lead_id, status)
    score_before, pql_before = before
    if status.score != score_before:
        data = {"from": score_before, "to": status.score}
        outbox.emit("lead.score_changed", lead, data, at, score_change=status.score - score_before)
    if status.pql and not pql_before:
        outbox.emit("lead.pql", lead, {"score": status.score}, at)
    if change is not None:
        emit_transition(outbox, change, lead)


def emit_routed(outbox: Outbox, decision: Any, lead: Mapping[str, Any], actor: str) -> None:
    if decision.kind == "unrouted":
        return
    outbox.emit(
        "lead.routed",
        lead,
        {**decision.to_dict(), "actor": actor, "at": format_time(decision.at)},
        decision.at,
    )


# --- delivery ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How hard to try: exponential backoff from `base_delay` (doubling per attempt up to
    `max_delay`, each delay drawn between its half and its whole: jitter), dead after
    `max_attempts`; `lease` is how long a claimed row is left to its worker."""

    base_delay: float = 5.0
    max_delay: float = 3600.0
    max_attempts: int = 10
    timeout: float = 10.0
    lease: float = 60.0
    batch: int = 100

    def delay(self, attempts: int, rng: random.Random) -> float:
        full = min(self.max_delay, self.base_delay * 2 ** max(0, attempts - 1))
        return full / 2 + rng.uniform(0, full / 2)


def _due(engine: Engine, now: float) -> bool:
    """Whether anything is due: a plain read, so an idle worker takes no lock."""
    query = (
        select(webhook_outbox.c.id)
        .where(webhook_outbox.c.state == "pending", webhook_outbox.c.next_attempt_at <= now)
        .limit(1)
    )
    with engine.connect() as conn:
        return conn.execute(query).first() is not None


def _claim(engine: Engine, policy: DeliveryPolicy, now: float) -> list[dict[str, Any]]:
    """Lease due rows to this worker: each the earliest undelivered row of its lead and
    subscription, of an active subscription. The lease is taken by a conditional update,
    so two workers never hold one row (on PostgreSQL the second update waits for the
    first and then finds the row leased); `lease_token` says whose lease it is."""
    o, earlier = webhook_outbox.alias("o"), webhook_outbox.alias("earlier")
    blocked = (
        select(earlier.c.id)
        .where(
            earlier.c.subscription_id == o.c.subscription_id,
            earlier.c.lead_id == o.c.lead_id,
            earlier.c.state == "pending",
            earlier.c.id < o.c.id,
        )
        .exists()
    )
    active = select(webhook_subscriptions.c.id).where(webhook_subscriptions.c.active)
    free = (o.c.lease_until.is_(None)) | (o.c.lease_until < now)
    candidates = (
        select(o.c.id)
        .where(
            o.c.state == "pending",
            o.c.next_attempt_at <= now,
            free,
            o.c.subscription_id.in_(active),
            ~blocked,
        )
        .order_by(o.c.id)
        .limit(policy.batch)
    )
    token = secrets.token_hex(16)
    table = webhook_outbox
    with writing(engine, leads=False) as conn:
        ids = list(conn.execute(candidates).scalars())
        if not ids:
            return []
        conn.execute(
            update(table)
            .where(
                table.c.id.in_(ids),
                table.c.state == "pending",
                (table.c.lease_until.is_(None)) | (table.c.lease_until < now),
            )
            .values(lease_until=now + policy.lease, lease_token=token)
        )
        query = (
            select(
                table.c.id,
                table.c.subscription_id,
                table.c.event_type,
                table.c.payload,
                table.c.attempts,
                webhook_subscriptions.c.url,
                webhook_subscriptions.c.secret,
            )
            .join(webhook_subscriptions, webhook_subscriptions.c.id == table.c.subscription_id)
            .where(table.c.lease_token == token, table.c.id.in_(ids))
            .order_by(table.c.id)
        )
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["token"], row["lease_until"] = token, now + policy.lease
    return rows


@dataclass(frozen=True, slots=True)
class _Outcome:
    id: int
    ok: bool
    status: int | None
    error: str | None


def _send(client: httpx.Client, row: dict[str, Any], now: float) -> _Outcome:
    body = orjson.dumps({"id": row["id"], **row["payload"]})
    headers = {
        "Content-Type": "application/json",
        "Qualify-Event": row["event_type"],
        "Qualify-Delivery": str(row["id"]),
        SIGNATURE_HEADER: sign(row["secret"], body, int(now)),
    }
    try:
        answer = client.post(row["url"], content=body, headers=headers)
    except httpx.HTTPError as exc:
        return _Outcome(row["id"], False, None, f"{type(exc).__name__}: {exc}"[:500])
    ok = 200 <= answer.status_code < 300
    return _Outcome(row["id"], ok, answer.status_code, None if ok else answer.text[:500])


def deliver_due(
    engine: Engine,
    client: httpx.Client,
    *,
    policy: DeliveryPolicy = DeliveryPolicy(),
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
) -> int:
    """One round: lease due rows, send each and record its outcome at once. A send is
    started only while the lease can outlast it, so no other worker sends the row
    meanwhile; rows the lease does not cover are released. Returns how many were sent."""
    rng = rng or random.Random()
    if not _due(engine, clock()):
        return 0
    rows = _claim(engine, policy, clock())
    sent = 0
    for n, row in enumerate(rows):
        if clock() + policy.timeout >= row["lease_until"]:
            _release(engine, rows[n:])
            break
        outcome = _send(client, row, clock())
        _record(engine, row, outcome, policy, clock(), rng)
        sent += 1
    return sent


def _release(engine: Engine, rows: Sequence[dict[str, Any]]) -> None:
    with writing(engine, leads=False) as conn:
        for row in rows:
            conn.execute(
                update(webhook_outbox)
                .where(
                    webhook_outbox.c.id == row["id"], webhook_outbox.c.lease_token == row["token"]
                )
                .values(lease_until=None, lease_token=None)
            )


def _record(
    engine: Engine,
    row: dict[str, Any],
    outcome: _Outcome,
    policy: DeliveryPolicy,
    now: float,
    rng: random.Random,
) -> None:
    """Write one outcome, only while this worker's lease holds the row."""
    tried = row["attempts"] + 1
    values: dict[str, Any] = {
        "attempts": tried,
        "last_status": outcome.status,
        "lease_until": None,
        "lease_token": None,
    }
    if outcome.ok:
        values.update(state="delivered", delivered_at=now, last_error=None)
    else:
        values.update(last_error=outcome.error, next_attempt_at=now + policy.delay(tried, rng))
        if tried >= policy.max_attempts:
            values["state"] = "dead"
    with writing(engine, leads=False) as conn:
        conn.execute(
            update(webhook_outbox)
            .where(
                webhook_outbox.c.id == row["id"],
                webhook_outbox.c.lease_token == row["token"],
                webhook_outbox.c.state == "pending",
            )
            .values(values)
        )


def _any_active(engine: Engine) -> bool:
    query = select(webhook_subscriptions.c.id).where(webhook_subscriptions.c.active).limit(1)
    with engine.connect() as conn:
        return conn.execute(query).first() is not None


class DeliveryWorker:
    """Sends due webhook rows on a daemon thread until `stop`."""

    def __init__(
        self,
        engine: Engine,
        *,
        policy: DeliveryPolicy = DeliveryPolicy(),
        idle: float = 0.5,
        check_every: float = 10.0,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.idle = idle
        self.check_every = check_every
        self._starting = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qualify-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def ensure(self) -> None:
        """Start the thread if a subscription is active and it is not running yet.

        Measured on SQLite: a running delivery thread, even one that only waits, doubled
        the p99 latency of single `/v1/track` calls; a store without webhooks pays nothing.
        """
        if not self._thread.is_alive() and not self._stop.is_set() and _any_active(self.engine):
            with self._starting:
                if not self._thread.is_alive():
                    self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.policy.timeout + 5)

    def _run(self) -> None:
        """Polls the outbox while some subscription is active (looked up every
        `check_every` seconds)."""
        rng = random.Random()
        active, checked = False, -math.inf
        with httpx.Client(timeout=self.policy.timeout) as client:
            while not self._stop.is_set():
                sent = 0
                try:
                    if time.monotonic() - checked >= self.check_every:
                        active, checked = _any_active(self.engine), time.monotonic()
                    if active:
                        sent = deliver_due(self.engine, client, policy=self.policy, rng=rng)
                except Exception:  # logged; the rows' leases run out and they are retried
                    log.exception("webhook delivery round failed")
                if not sent:
                    self._stop.wait(self.idle if active else self.check_every)
