"""Issue 17: invoices and credit notes (I1-I3), numbered per series and year by a locked counter row, kept as
issued: on PostgreSQL a trigger refuses UPDATE and DELETE of an issued document, as for the audit log, but for
storing its PDF once into an empty `pdf`.

Revision ID: 0014_invoices
Revises: 0013_domain_events
Created: 2026-12-05 03:00:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.models.base import UTCDateTime

revision = "0014_invoices"
down_revision = "0013_domain_events"
branch_labels = None
depends_on = None

# I3: an issued invoice or credit note never changes; PostgreSQL refuses it whoever asks. The one write allowed is
# the PDF stored once into an empty `pdf`, everything else unchanged.
KEPT_AS_ISSUED = (
    """CREATE FUNCTION documents_kept_as_issued() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND OLD.pdf IS NULL AND NEW.pdf IS NOT NULL
           AND (to_jsonb(NEW) - 'pdf') = (to_jsonb(OLD) - 'pdf') THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION '% is kept as issued: % is refused', TG_TABLE_NAME, TG_OP;
    END $$""",
    """CREATE TRIGGER invoices_kept_as_issued BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION documents_kept_as_issued()""",
    """CREATE TRIGGER credit_notes_kept_as_issued BEFORE UPDATE OR DELETE ON credit_notes
    FOR EACH ROW EXECUTE FUNCTION documents_kept_as_issued()""",
)


def upgrade() -> None:
    op.create_table(
        "document_counters",
        sa.Column("series", sa.String(length=8), nullable=False),
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_number", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("series IN ('INV', 'CN')", name=op.f("ck_document_counters_series")),
        sa.CheckConstraint("last_number >= 0", name=op.f("ck_document_counters_last_number_not_negative")),
        sa.PrimaryKeyConstraint("series", "year", name=op.f("pk_document_counters")),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("seller", sa.JSON(), nullable=False),
        sa.Column("buyer", sa.JSON(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("subtotal", sa.BigInteger(), nullable=False),
        sa.Column("tax_rate_bps", sa.Integer(), nullable=False),
        sa.Column("tax_amount", sa.BigInteger(), nullable=False),
        sa.Column("tax_note", sa.Text(), nullable=True),
        sa.Column("credit_applied", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("policy_version", sa.String(length=32), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint("kind IN ('full', 'simplified')", name=op.f("ck_invoices_kind")),
        sa.CheckConstraint(
            "subtotal >= 0 AND tax_amount >= 0 AND credit_applied >= 0"
            " AND total = subtotal + tax_amount - credit_applied",
            name=op.f("ck_invoices_figures"),
        ),
        sa.CheckConstraint("tax_rate_bps >= 0 AND tax_rate_bps < 10000", name=op.f("ck_invoices_tax_rate_bps")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_invoices_customer_id_customers")),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name=op.f("fk_invoices_payment_id_payments")),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["subscriptions.id"], name=op.f("fk_invoices_subscription_id_subscriptions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("number", name=op.f("uq_invoices_number")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_invoices_payment_id")),
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index("ix_invoices_customer_id", ["customer_id", "id"], unique=False)
    op.create_table(
        "credit_notes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("invoice_number", sa.String(length=32), nullable=False),
        sa.Column("invoice_issued_at", UTCDateTime(), nullable=False),
        sa.Column("refund_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("seller", sa.JSON(), nullable=False),
        sa.Column("buyer", sa.JSON(), nullable=False),
        sa.Column("tax_rate_bps", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("price_amount", sa.BigInteger(), nullable=False),
        sa.Column("tax_amount", sa.BigInteger(), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint(
            "amount >= 1 AND price_amount >= 0 AND tax_amount >= 0 AND amount = price_amount + tax_amount",
            name=op.f("ck_credit_notes_split"),
        ),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_credit_notes_customer_id_customers")),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_credit_notes_invoice_id_invoices")),
        sa.ForeignKeyConstraint(["refund_id"], ["refunds.id"], name=op.f("fk_credit_notes_refund_id_refunds")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_notes")),
        sa.UniqueConstraint("number", name=op.f("uq_credit_notes_number")),
        sa.UniqueConstraint("refund_id", name=op.f("uq_credit_notes_refund_id")),
    )
    with op.batch_alter_table("credit_notes", schema=None) as batch_op:
        batch_op.create_index("ix_credit_notes_customer_id", ["customer_id", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_credit_notes_invoice_id"), ["invoice_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for statement in KEPT_AS_ISSUED:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER credit_notes_kept_as_issued ON credit_notes")
        op.execute("DROP TRIGGER invoices_kept_as_issued ON invoices")
        op.execute("DROP FUNCTION documents_kept_as_issued()")
    with op.batch_alter_table("credit_notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_notes_invoice_id"))
        batch_op.drop_index("ix_credit_notes_customer_id")
    op.drop_table("credit_notes")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index("ix_invoices_customer_id")
    op.drop_table("invoices")
    op.drop_table("document_counters")
