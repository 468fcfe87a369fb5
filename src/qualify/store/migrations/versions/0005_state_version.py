"""The model version a lead's stored rule state was built for.

A batch engine's write-back stores scores without the per-rule state the live engine keeps;
such a lead's state is rebuilt from its events the next time the live engine touches it.
Until now the scores' version told that too; existing leads keep that meaning.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.add_column(sa.Column("state_version_id", sa.Integer))
    op.execute("UPDATE leads SET state_version_id = model_version_id")


def downgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.drop_column("state_version_id")
