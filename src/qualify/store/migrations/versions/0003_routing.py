"""Routing and the SLA: where each MQL went (lead columns and the `routings` history), the
round-robin cursor (`roster_seats`), members' availability, account owners, SLA breaches.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")

LEAD_COLUMNS = (
    ("routing", sa.String(20)),
    ("owner", sa.String(200)),
    ("team", sa.String(200)),
    ("nurture_campaign", sa.String(200)),
    ("routed_at", sa.Float),
    ("sla_due_at", sa.Float),
    ("sla_breached_at", sa.Float),
)


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        for name, kind in LEAD_COLUMNS:
            batch.add_column(sa.Column(name, kind))
        batch.create_index("ix_leads_owner", ["owner"])
        batch.create_index("ix_leads_sla_due_at", ["sla_due_at"])
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("owner", sa.String(200)))
    op.create_table(
        "routings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("lead_id", sa.String(200), nullable=False, index=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("rule", sa.String(200)),
        sa.Column("team", sa.String(200)),
        sa.Column("member", sa.String(200)),
        sa.Column("campaign", sa.String(200)),
        sa.Column("strategy", sa.String(40)),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("skipped", Json, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
    )
    op.create_table(
        "roster_seats",
        sa.Column("team", sa.String(200), primary_key=True),
        sa.Column("member", sa.String(200), primary_key=True),
        sa.Column("last", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("assigned", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "members",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("available", sa.Boolean, nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "sla_breaches",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("lead_id", sa.String(200), nullable=False, index=True),
        sa.Column("member", sa.String(200)),
        sa.Column("due_at", sa.Float, nullable=False),
        sa.Column("breached_at", sa.Float, nullable=False),
        sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
    )


def downgrade() -> None:
    op.drop_table("sla_breaches")
    op.drop_table("members")
    op.drop_table("roster_seats")
    op.drop_table("routings")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("owner")
    with op.batch_alter_table("leads") as batch:
        batch.drop_index("ix_leads_sla_due_at")
        batch.drop_index("ix_leads_owner")
        for name, _ in reversed(LEAD_COLUMNS):
            batch.drop_column(name)
