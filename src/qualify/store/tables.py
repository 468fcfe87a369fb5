"""The store's tables (SQLAlchemy Core). Migrations in `migrations/` create exactly these.

Times are stored as seconds since the epoch (UTC) in floating-point columns named `*_at`,
`ts`, `first_seen`, `last_seen`: exact, fast to write, and portable between SQLite and
PostgreSQL (`datetime(ts, 'unixepoch')`, `to_timestamp(ts)` in reports).

Leads, events and the ledger agree: replaying a lead's events rebuilds its row, and the sum
of its ledger rows per rule equals its `rule_points`.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

__all__ = [
    "accounts",
    "api_keys",
    "events",
    "identities",
    "jobs",
    "leads",
    "ledger",
    "members",
    "metadata",
    "model_versions",
    "roster_seats",
    "routings",
    "sla_breaches",
    "store_state",
    "transitions",
    "webhook_outbox",
    "webhook_subscriptions",
]

metadata = MetaData()
Json = JSON().with_variant(JSONB(), "postgresql")

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("version", String(100), nullable=False),
    Column("checksum", String(32), nullable=False),
    Column("source", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False, server_default="cli"),
    Column("activated_at", Float),
    Column("active", Boolean, nullable=False, server_default="0"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("traits", Json, nullable=False),
    Column("trait_stamps", Json, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("owner", String(200)),  # the member who owns the account (`account_owner: true`)
    # the store's write generation when the row was last written (see `written_since`)
    Column("written_generation", BigInteger, index=True),
)

leads = Table(
    "leads",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("account_id", String(200), index=True),
    Column("account_stamp", Json),
    Column("traits", Json, nullable=False),
    Column("trait_stamps", Json, nullable=False),
    Column("source", String(200), index=True),
    Column("campaign", String(200)),
    Column("source_stamp", Json),
    Column("first_seen", Float),
    Column("last_seen", Float),
    Column("stage", String(20), nullable=False, index=True),
    Column("stage_at", Float, nullable=False),
    Column("recycled_at", Float),
    Column("qualified_at", Float),
    Column("fit", Float, nullable=False, server_default="0"),
    Column("engagement", Float, nullable=False, server_default="0"),
    Column("score", Float, nullable=False, server_default="0", index=True),
    Column("mql", Boolean, nullable=False, server_default="0"),
    Column("pql", Boolean, nullable=False, server_default="0"),
    Column("tier", String(50), index=True),
    Column("grade", String(50)),
    Column("rule_points", Json, nullable=False),
    Column("state", LargeBinary, nullable=False),
    Column("model_version_id", Integer, ForeignKey("model_versions.id")),
    # the version `state` was built for; another (or none, after a batch write-back) means
    # the live engine rebuilds the state from the lead's events before it is used
    Column("state_version_id", Integer),
    Column("scored_at", Float),
    Column("created_at", Float, nullable=False),
    # routing: where the lead went (see `routings` for the history) and its SLA
    Column("routing", String(20)),  # nurture, assign or unrouted; null: never routed
    Column("owner", String(200), index=True),
    Column("team", String(200)),
    Column("nurture_campaign", String(200)),
    Column("routed_at", Float),
    Column("sla_due_at", Float, index=True),
    Column("sla_breached_at", Float),
    # the store's write generation when the row was last written (see `written_since`)
    Column("written_generation", BigInteger, index=True),
)

identities = Table(
    "identities",
    metadata,
    Column("kind", String(10), primary_key=True),
    Column("value", String(200), primary_key=True),
    Column("lead_id", String(200), nullable=False, index=True),
    # the store's write generation when the row was last written (see `written_since`)
    Column("written_generation", BigInteger, index=True),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(200), nullable=False, unique=True),
    Column("lead_id", String(200), nullable=False, index=True),
    Column("type", String(20), nullable=False),
    Column("name", String(200), nullable=False),
    Column("ts", Float, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("payload", Json, nullable=False),
)

ledger = Table(
    "ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("lead_id", String(200), nullable=False),
    Column("rule", String(200), nullable=False),
    Column("points", Float, nullable=False),
    Column("message_id", String(200)),
    Column("reason", String(20), nullable=False),
    Column("model_version_id", Integer, ForeignKey("model_versions.id")),
    Column("at", Float, nullable=False),
    Index("ix_ledger_lead", "lead_id", "id"),
)

transitions = Table(
    "transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("lead_id", String(200), nullable=False),
    Column("from_stage", String(20), nullable=False),
    Column("to_stage", String(20), nullable=False),
    Column("action", String(20), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("at", Float, nullable=False),
    Column("model_version_id", Integer, ForeignKey("model_versions.id")),
    Column("details", Json, nullable=False),
    Index("ix_transitions_lead", "lead_id", "id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("prefix", String(20), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(40), nullable=False),
    Column("status", String(20), nullable=False),  # running, done, failed
    Column("phase", String(80)),  # what a running job is doing now, in words
    Column("done", Integer, nullable=False, server_default="0"),
    Column("total", Integer),
    Column("result", Json),
    Column("error", Text),
    Column("created_by", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
)

# One row: bumped by every transaction that writes leads, so a process can tell whether what
# it remembers from its own last transaction is still what the store holds.
store_state = Table(
    "store_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("generation", BigInteger, nullable=False, server_default="0"),
)

# Every routing decision: by the model's rules, re-routing, manual assignment, SLA breach.
routings = Table(
    "routings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("lead_id", String(200), nullable=False, index=True),
    Column("kind", String(20), nullable=False),  # nurture, assign, unrouted
    Column("rule", String(200)),
    Column("team", String(200)),
    Column("member", String(200)),
    Column("campaign", String(200)),
    Column("strategy", String(40)),
    Column("reason", Text, nullable=False, server_default=""),
    Column("skipped", Json, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("at", Float, nullable=False),
    Column("model_version_id", Integer, ForeignKey("model_versions.id")),
)

# The round-robin cursor: per team and member, the team's assignment number that last went
# to the member, and how many of the team's leads the member had (weighted routing).
roster_seats = Table(
    "roster_seats",
    metadata,
    Column("team", String(200), primary_key=True),
    Column("member", String(200), primary_key=True),
    Column("last", BigInteger, nullable=False, server_default="0"),
    Column("assigned", BigInteger, nullable=False, server_default="0"),
)

# Members marked available or not (out of office); a member without a row is available.
members = Table(
    "members",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("available", Boolean, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(200), nullable=False),
)

sla_breaches = Table(
    "sla_breaches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("lead_id", String(200), nullable=False, index=True),
    Column("member", String(200)),
    Column("due_at", Float, nullable=False),
    Column("breached_at", Float, nullable=False),
    Column("model_version_id", Integer, ForeignKey("model_versions.id")),
)

# Outbound webhooks: who wants which lead events, and the transactional outbox (a row per
# subscription and event, written in the transaction of the change that caused it).
webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("url", Text, nullable=False),
    Column("events", Json, nullable=False),  # event types, e.g. ["lead.mql", "lead.routed"]
    Column("secret", String(100), nullable=False),  # signs each request (HMAC-SHA256)
    Column("min_score_change", Float, nullable=False, server_default="0"),
    Column("active", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
)

webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("subscription_id", Integer, ForeignKey("webhook_subscriptions.id"), nullable=False),
    Column("lead_id", String(200), nullable=False),
    Column("event_type", String(40), nullable=False),
    Column("payload", Json, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("state", String(10), nullable=False),  # pending, delivered, dead, cancelled
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_until", Float),  # a worker is sending it until then
    Column("lease_token", String(32)),  # which claim holds the lease
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("delivered_at", Float),
    Index("ix_webhook_outbox_due", "state", "next_attempt_at"),
    Index("ix_webhook_outbox_lead", "subscription_id", "lead_id", "state", "id"),
)
