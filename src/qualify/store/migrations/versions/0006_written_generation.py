"""The write generation in which each lead, account and identity row was last written.

A server process keeps the leads, accounts and identities it read in memory between its
transactions. When another process wrote in between, it asks which rows that process wrote
(an index range on this column) and forgets only those, instead of everything it holds.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("leads", "accounts", "identities"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("written_generation", sa.BigInteger))
        op.create_index(f"ix_{table}_written_generation", table, ["written_generation"])


def downgrade() -> None:
    for table in ("leads", "accounts", "identities"):
        op.drop_index(f"ix_{table}_written_generation", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("written_generation")
