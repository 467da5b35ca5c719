"""Issue 17: a payment names its invoice (`invoice_id`, I1) and a refund its credit note (`credit_note_id`, I2),
set in the transaction that records the success.

Revision ID: 0016_document_links
Revises: 0015_plan_changes
Created: 2026-12-05 04:50:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_document_links"
down_revision = "0015_plan_changes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("invoice_id", sa.String(length=40), nullable=True))
    with op.batch_alter_table("refunds") as batch:
        batch.add_column(sa.Column("credit_note_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refunds") as batch:
        batch.drop_column("credit_note_id")
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("invoice_id")
