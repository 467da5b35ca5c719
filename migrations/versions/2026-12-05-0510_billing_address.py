"""Issue 17: customers gain an optional billing address (JSON: line1, line2, city, postal_code, region) and an
optional tax id (a VAT or GST number), printed on their invoices (I1; P1 validated, D2 correctable, D1 exported).

Revision ID: 0017_billing_address
Revises: 0016_document_links
Created: 2026-12-05 05:10:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_billing_address"
down_revision = "0016_document_links"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("address", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("tax_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("tax_id")
        batch.drop_column("address")
