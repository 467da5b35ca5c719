"""B1: a cancellation at the gateway that the gateway keeps refusing is given up after a cap
(`payments.gateway_cancel_refusals`), with `payment.cancel_failed` in the audit log for ops.

Revision ID: 0012_cancel_refusals
Revises: 0011_refund_request_key
Created: 2026-12-05 01:40:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_cancel_refusals"
down_revision = "0011_refund_request_key"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gateway_cancel_refusals", sa.Integer(), nullable=False,
                                      server_default=sa.text("0")))


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("gateway_cancel_refusals")
