"""The initial schema: model versions, accounts, leads, identities, events, ledger, transitions.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("checksum", sa.String(32), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False, server_default="cli"),
        sa.Column("activated_at", sa.Float),
        sa.Column("active", sa.Boolean, nullable=False, server_default="0"),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("traits", Json, nullable=False),
        sa.Column("trait_stamps", Json, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "leads",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("account_id", sa.String(200), index=True),
        sa.Column("account_stamp", Json),
        sa.Column("traits", Json, nullable=False),
        sa.Column("trait_stamps", Json, nullable=False),
        sa.Column("source", sa.String(200), index=True),
        sa.Column("campaign", sa.String(200)),
        sa.Column("source_stamp", Json),
        sa.Column("first_seen", sa.Float),
        sa.Column("last_seen", sa.Float),
        sa.Column("stage", sa.String(20), nullable=False, index=True),
        sa.Column("stage_at", sa.Float, nullable=False),
        sa.Column("recycled_at", sa.Float),
        sa.Column("qualified_at", sa.Float),
        sa.Column("fit", sa.Float, nullable=False, server_default="0"),
        sa.Column("engagement", sa.Float, nullable=False, server_default="0"),
        sa.Column("score", sa.Float, nullable=False, server_default="0", index=True),
        sa.Column("mql", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("pql", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("tier", sa.String(50), index=True),
        sa.Column("grade", sa.String(50)),
        sa.Column("rule_points", Json, nullable=False),
        sa.Column("state", sa.LargeBinary, nullable=False),
        sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
        sa.Column("scored_at", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "identities",
        sa.Column("kind", sa.String(10), primary_key=True),
        sa.Column("value", sa.String(200), primary_key=True),
        sa.Column("lead_id", sa.String(200), nullable=False, index=True),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(200), nullable=False, unique=True),
        sa.Column("lead_id", sa.String(200), nullable=False, index=True),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("payload", Json, nullable=False),
    )
    op.create_table(
        "ledger",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("lead_id", sa.String(200), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("points", sa.Float, nullable=False),
        sa.Column("message_id", sa.String(200)),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_ledger_lead", "ledger", ["lead_id", "id"])
    op.create_table(
        "transitions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("lead_id", sa.String(200), nullable=False),
        sa.Column("from_stage", sa.String(20), nullable=False),
        sa.Column("to_stage", sa.String(20), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
        sa.Column("details", Json, nullable=False),
    )
    op.create_index("ix_transitions_lead", "transitions", ["lead_id", "id"])


def downgrade() -> None:
    for table in (
        "transitions",
        "ledger",
        "events",
        "identities",
        "leads",
        "accounts",
        "model_versions",
    ):
        op.drop_table(table)
