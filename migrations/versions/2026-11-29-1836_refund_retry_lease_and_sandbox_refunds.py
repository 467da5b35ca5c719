"""R2: a pending refund is retried after 5 minutes of real time (`refunds.gateway_attempted_at`, set from the system
clock when the gateway is asked, replacing the business-clock `updated_at` in the pending-refunds index), and the
sandbox gateway keeps its refunds by idempotency key (`sandbox_refunds`), as Stripe does.

Refunds pending when this revision runs are marked with its time (a replica of the previous version may still be
waiting for their answer): the retry job gives them 5 minutes, like any other.

Revision ID: 0006_refund_retries
Revises: 0005_audit_erasure
Created: 2026-11-29 18:36:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.models.base import UTCDateTime

revision = "0006_refund_retries"
down_revision = "0005_audit_erasure"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table("sandbox_refunds",
    sa.Column("idempotency_key", sa.String(length=120), nullable=False),
    sa.Column("payment_intent_id", sa.String(length=64), nullable=False),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("refund_id", sa.String(length=64), nullable=True),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint("status IN ('succeeded', 'failed')", name=op.f("ck_sandbox_refunds_status")),
    sa.ForeignKeyConstraint(["payment_intent_id"], ["sandbox_charges.payment_intent_id"],
                            name=op.f("fk_sandbox_refunds_payment_intent_id_sandbox_charges")),
    sa.PrimaryKeyConstraint("idempotency_key", name=op.f("pk_sandbox_refunds")),
    sa.UniqueConstraint("refund_id", name=op.f("uq_sandbox_refunds_refund_id"))
    )
    with op.batch_alter_table("sandbox_refunds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sandbox_refunds_payment_intent_id"), ["payment_intent_id"], unique=False)

    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index("ix_refunds_pending", sqlite_where=PENDING, postgresql_where=PENDING)
        batch_op.add_column(sa.Column("gateway_attempted_at", UTCDateTime(), nullable=True))
        batch_op.create_index("ix_refunds_pending", ["gateway_attempted_at"], unique=False,
                              sqlite_where=PENDING, postgresql_where=PENDING)
    # CURRENT_TIMESTAMP is UTC on both databases (SQLite: naive UTC text, as UTCDateTime stores it).
    op.execute("UPDATE refunds SET gateway_attempted_at = CURRENT_TIMESTAMP WHERE status = 'pending'")


def downgrade() -> None:
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index("ix_refunds_pending", sqlite_where=PENDING, postgresql_where=PENDING)
        batch_op.drop_column("gateway_attempted_at")
        batch_op.create_index("ix_refunds_pending", ["updated_at"], unique=False,
                              sqlite_where=PENDING, postgresql_where=PENDING)

    with op.batch_alter_table("sandbox_refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sandbox_refunds_payment_intent_id"))

    op.drop_table("sandbox_refunds")
