"""R2: an ops refund asked for with an `Idempotency-Key` records which request made it (`refunds.request_key`, a
digest of the caller, the key and the payment), so that the request repeated after a fault partway through (the
reservation committed, the outcome not) finds the same refund and completes it instead of making a second one.

Revision ID: 0011_refund_request_key
Revises: 0010_idempotency_witness
Created: 2026-12-05 02:00:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_refund_request_key"
down_revision = "0010_idempotency_witness"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("refunds") as batch:
        batch.add_column(sa.Column("request_key", sa.String(64), nullable=True))
    op.create_index("uq_refunds_request_key", "refunds", ["request_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_refunds_request_key", table_name="refunds")
    with op.batch_alter_table("refunds") as batch:
        batch.drop_column("request_key")
