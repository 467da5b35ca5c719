"""Invoices, credit notes and the counters that number them (I1-I3).

Issued documents are never changed (I3): no code path updates them, and on PostgreSQL a trigger refuses any UPDATE
or DELETE (migration `0014_invoices`), but for the one write a document may take after its INSERT: its PDF, stored
once into an empty `pdf` (the bytes are then served as stored, byte for byte, for good).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)

from app.models.base import APIDocument, Id, MinorUnits, UTCDateTime, metadata

# I1/I2: one row per series and calendar year of issue; its `last_number` is raised in the issuing transaction
# (UPDATE ... RETURNING), so the row stays locked until that transaction ends: a rolled-back issue gives its numbers
# back, and no two transactions can take the same one. A database sequence would leave gaps on rollback.
document_counters = Table(
    "document_counters",
    metadata,
    Column("series", String(8), primary_key=True),
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("last_number", BigInteger, nullable=False),
    CheckConstraint("series IN ('INV', 'CN')", name="series"),
    CheckConstraint("last_number >= 0", name="last_number_not_negative"),
)

invoices = Table(
    "invoices",
    metadata,
    Column("id", Id(), primary_key=True),
    Column("number", String(32), nullable=False, unique=True),  # INV-2031-000001
    Column("kind", String(16), nullable=False),  # full | simplified
    Column("customer_id", Id(), ForeignKey("customers.id"), nullable=False),
    Column("subscription_id", Id(), ForeignKey("subscriptions.id"), nullable=False),
    Column("payment_id", Id(), ForeignKey("payments.id"), nullable=False, unique=True),  # I1: exactly one
    Column("issued_at", UTCDateTime, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("seller", JSON, nullable=False),  # {name, address, tax_id} as at issue
    Column("buyer", JSON, nullable=False),  # {name, country, address, tax_id} as billed; never the email
    Column("lines", APIDocument, nullable=False),  # [{description, plan, period_start, period_end, unit_amount, ...}]
    Column("subtotal", MinorUnits, nullable=False),
    Column("tax_rate_bps", Integer, nullable=False),
    Column("tax_amount", MinorUnits, nullable=False),
    Column("tax_note", Text, nullable=True),
    Column("credit_applied", MinorUnits, nullable=False),
    Column("total", MinorUnits, nullable=False),
    Column("policy_version", String(32), nullable=False),
    Column("pdf", LargeBinary, nullable=True),  # rendered once, then served as stored
    CheckConstraint("kind IN ('full', 'simplified')", name="kind"),
    CheckConstraint(
        "subtotal >= 0 AND tax_amount >= 0 AND credit_applied >= 0 AND total = subtotal + tax_amount - credit_applied",
        name="figures",
    ),
    CheckConstraint("tax_rate_bps >= 0 AND tax_rate_bps < 10000", name="tax_rate_bps"),
    Index("ix_invoices_customer_id", "customer_id", "id"),
)

credit_notes = Table(
    "credit_notes",
    metadata,
    Column("id", Id(), primary_key=True),
    Column("number", String(32), nullable=False, unique=True),  # CN-2031-000001
    Column("invoice_id", Id(), ForeignKey("invoices.id"), nullable=False, index=True),
    Column("invoice_number", String(32), nullable=False),
    Column("invoice_issued_at", UTCDateTime, nullable=False),
    Column("refund_id", Id(), ForeignKey("refunds.id"), nullable=False, unique=True),  # I2: exactly one
    Column("customer_id", Id(), ForeignKey("customers.id"), nullable=False),
    Column("issued_at", UTCDateTime, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("seller", JSON, nullable=False),
    Column("buyer", JSON, nullable=False),
    Column("tax_rate_bps", Integer, nullable=False),
    Column("amount", MinorUnits, nullable=False),
    Column("price_amount", MinorUnits, nullable=False),
    Column("tax_amount", MinorUnits, nullable=False),
    Column("pdf", LargeBinary, nullable=True),
    CheckConstraint(
        "amount >= 1 AND price_amount >= 0 AND tax_amount >= 0 AND amount = price_amount + tax_amount",
        name="split",
    ),
    Index("ix_credit_notes_customer_id", "customer_id", "id"),
)
