"""B1: a purchase failed or abandoned has its PaymentIntent cancelled at the gateway, durably
(`payments.gateway_cancel_due_at`, retried by a job until the gateway confirms), and a payment that succeeds all
the same for a purchase that no longer waits for it is refunded in full automatically: a refund of the new source
`correction`.

Revision ID: 0009_b1_corrections
Revises: 0008_suspension_holds
Created: 2026-12-05 01:00:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.models.base import UTCDateTime

revision = "0009_b1_corrections"
down_revision = "0008_suspension_holds"
branch_labels = None
depends_on = None

CANCEL_DUE = sa.text("gateway_cancel_due_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gateway_cancel_due_at", UTCDateTime(), nullable=True))
        batch_op.create_index("ix_payments_gateway_cancel_due", ["gateway_cancel_due_at"], unique=False,
                              sqlite_where=CANCEL_DUE, postgresql_where=CANCEL_DUE)
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_refunds_source"), type_="check")
        batch_op.create_check_constraint(op.f("ck_refunds_source"), "source IN ('ops', 'gateway', 'correction')")


def downgrade() -> None:
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_refunds_source"), type_="check")
        batch_op.create_check_constraint(op.f("ck_refunds_source"), "source IN ('ops', 'gateway')")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_gateway_cancel_due", sqlite_where=CANCEL_DUE, postgresql_where=CANCEL_DUE)
        batch_op.drop_column("gateway_cancel_due_at")
