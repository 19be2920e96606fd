"""Devices: protocol (json, senml, hj212, sl651) and the HJ 212 / SL 651 links.

An HJ 212 link is keyed by the station's MN, an SL 651 link by the RTU address: each unique
among devices. Passwords are stored only as ``stationflow.passwords`` hashes. Existing devices
become ``protocol = 'json'`` without links.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 22:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = (
    ("hj212_mn", sa.String(length=64)),
    ("hj212_password_hash", sa.String(length=200)),
    ("hj212_crc", sa.String(length=16)),
    ("hj212_strict", sa.Boolean()),
    ("hj212_allow_from", sa.JSON()),
    ("sl651_address", sa.String(length=10)),
    ("sl651_password_hash", sa.String(length=200)),
    ("sl651_ack", sa.String(length=8)),
    ("sl651_level_base_m", sa.Float()),
    ("sl651_allow_from", sa.JSON()),
)


def upgrade() -> None:
    """Apply."""
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("protocol", sa.String(length=16), server_default="json", nullable=False)
        )
        for name, type_ in COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
        batch_op.create_index(batch_op.f("ix_devices_hj212_mn"), ["hj212_mn"], unique=True)
        batch_op.create_index(batch_op.f("ix_devices_sl651_address"), ["sl651_address"], unique=True)


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_sl651_address"))
        batch_op.drop_index(batch_op.f("ix_devices_hj212_mn"))
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
        batch_op.drop_column("protocol")
