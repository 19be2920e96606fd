"""Stations: ``public`` (published by the open-data service); existing stations stay hidden.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 02:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    with op.batch_alter_table("stations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("public", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("stations", schema=None) as batch_op:
        batch_op.drop_column("public")
