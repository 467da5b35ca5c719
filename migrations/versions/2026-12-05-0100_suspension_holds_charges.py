"""R3/B5: a renewal or retry held while the customer was suspended is charged after the lifting, and its retries
count from the lifting: `subscriptions.charge_released_at` records when a suspension was lifted that held a charge
of the current period (null otherwise, and for every existing subscription).

Revision ID: 0008_suspension_holds
Revises: 0007_console_sessions
Created: 2026-12-05 01:00:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.models.base import UTCDateTime

revision = "0008_suspension_holds"
down_revision = "0007_console_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("charge_released_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("charge_released_at")
