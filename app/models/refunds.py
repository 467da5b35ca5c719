"""The refunds table: money given back, at ops' discretion (R2), as recorded from the gateway, or as a B1 correction."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    text,
)

from app.models.base import Id, MinorUnits, UTCDateTime, metadata, one_of
from policies.states import RefundSource, RefundStatus

refunds = Table(
    "refunds",
    metadata,
    Column("id", Id(), primary_key=True),
    Column("payment_id", Id(), ForeignKey("payments.id"), nullable=False, index=True),
    Column("customer_id", Id(), ForeignKey("customers.id"), nullable=False, index=True),
    Column("amount", MinorUnits, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_by", String(255), nullable=False),
    # ops: issued here (R2); gateway: made in Stripe's dashboard; correction: B1, a payment that bought nothing,
    # refunded in full automatically (its id, the gateway's idempotency key, is derived from the payment's)
    Column("source", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("gateway_refund_id", String(255), nullable=True, unique=True),
    Column("failure_reason", Text, nullable=True),
    Column("policy_version", String(32), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # R2: real time (the system clock, never the business clock) at which the gateway was last asked for this
    # refund. A refund still pending 5 minutes of real time after that got no answer and is sent again with its
    # key; setting it again before re-sending is the retry job's lease. Null for refunds recorded from the gateway.
    Column("gateway_attempted_at", UTCDateTime, nullable=True),
    # R2: an ops refund asked for with an Idempotency-Key: a digest of the caller, the key and the payment, so that
    # the request repeated after a fault partway through finds this refund and completes it (never a second one).
    Column("request_key", String(64), nullable=True),
    # I2: the refund's credit note, set in the transaction that recorded its success (null until then).
    Column("credit_note_id", Id(), nullable=True),
    CheckConstraint("amount >= 1", name="amount_positive"),
    CheckConstraint(one_of("source", RefundSource), name="source"),
    CheckConstraint(one_of("status", RefundStatus), name="status"),
    Index(
        "ix_refunds_pending",
        "gateway_attempted_at",
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
    Index("uq_refunds_request_key", "request_key", unique=True),
)
