"""Devices: the hash of their MQTT password.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mqtt_password_hash", sa.String(length=200), nullable=True))


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("mqtt_password_hash")
