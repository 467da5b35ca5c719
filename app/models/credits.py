"""The account-credit ledger (R2 grants, spending on charges, R3 forfeiture)."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    String,
    Table,
    Text,
)

from app.models.base import Id, MinorUnits, UTCDateTime, metadata, one_of
from policies.states import CreditKind

# Append-only ledger: a grant is positive; spending on a charge and forfeiture on termination are negative.
# The balance is the sum per customer and currency.
credit_entries = Table(
    "credit_entries",
    metadata,
    Column("id", Id(), primary_key=True),
    Column("customer_id", Id(), ForeignKey("customers.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("amount", MinorUnits, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reason", Text, nullable=True),
    Column("created_by", String(255), nullable=False),
    Column("payment_id", Id(), ForeignKey("payments.id"), nullable=True, unique=True),
    Column("policy_version", String(32), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint(one_of("kind", CreditKind), name="kind"),
    CheckConstraint("(kind = 'grant' AND amount > 0) OR (kind <> 'grant' AND amount < 0)", name="sign"),
)
