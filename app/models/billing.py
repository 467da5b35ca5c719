"""Tables of the paid half: subscriptions, payments, the sandbox gateway's ledger and the webhook inbox."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    text,
)

from app.models.base import Id, MinorUnits, UTCDateTime, metadata, one_of
from policies.states import LIVE_SUBSCRIPTION, EndedReason, PaymentStatus, SubscriptionStatus

LIVE = one_of("status", [status for status in SubscriptionStatus if status in LIVE_SUBSCRIPTION])

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", Id(), primary_key=True),
    Column("customer_id", Id(), ForeignKey("customers.id"), nullable=False, index=True),
    Column("plan_id", Id(), ForeignKey("plans.id"), nullable=False),
    Column("plan_code", String(64), nullable=False),
    Column("interval", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("price_amount", MinorUnits, nullable=False),  # B3: locked at purchase
    Column("currency", String(3), nullable=False),
    Column("tax_amount", MinorUnits, nullable=False),  # P2: of the current period's charge
    Column("payment_method", String(255), nullable=False),
    Column("anchor_at", UTCDateTime, nullable=True),  # B1/B4: the first payment's time; null while incomplete
    Column("period_index", Integer, nullable=False),
    # C3/B4: the period index whose start is anchor_at (0; after a plan change at a period end, that period's index:
    # the new plan's periods are counted from there). Period `i` is period_bounds(anchor_at, interval, i - this).
    Column("anchor_index", Integer, nullable=False, server_default=text("0")),
    Column("current_period_start", UTCDateTime, nullable=True),
    Column("current_period_end", UTCDateTime, nullable=True),
    Column("cancel_at_period_end", Boolean, nullable=False),
    Column("canceled_at", UTCDateTime, nullable=True),
    Column("ended_at", UTCDateTime, nullable=True),
    Column("ended_reason", String(16), nullable=True),
    Column("failed_attempts", Integer, nullable=False),  # B5: failures for the period being renewed
    Column("next_retry_at", UTCDateTime, nullable=True),
    Column("claimed_until", UTCDateTime, nullable=True),  # a replica charging it holds this short lease
    # R3/B5: when a suspension was lifted that held a charge of the period; its retries count from there.
    Column("charge_released_at", UTCDateTime, nullable=True),
    Column("policy_version", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint(one_of("status", SubscriptionStatus), name="status"),
    CheckConstraint(
        "ended_reason IS NULL OR " + one_of("ended_reason", EndedReason),
        name="ended_reason",
    ),
    CheckConstraint("price_amount >= 0 AND tax_amount >= 0", name="amounts_not_negative"),
    # One live subscription per customer, held by the database also under concurrent purchases.
    Index(
        "uq_subscriptions_live_customer",
        "customer_id",
        unique=True,
        sqlite_where=text(LIVE),
        postgresql_where=text(LIVE),
    ),
    # Due-work indexes: renewals and period ends, dunning retries, abandoned purchases.
    Index(
        "ix_subscriptions_period_end_due",
        "current_period_end",
        sqlite_where=text("status = 'active'"),
        postgresql_where=text("status = 'active'"),
    ),
    Index(
        "ix_subscriptions_retry_due",
        "next_retry_at",
        sqlite_where=text("status = 'past_due'"),
        postgresql_where=text("status = 'past_due'"),
    ),
    Index(
        "ix_subscriptions_incomplete",
        "created_at",
        sqlite_where=text("status = 'incomplete'"),
        postgresql_where=text("status = 'incomplete'"),
    ),
)

payments = Table(
    "payments",
    metadata,
    Column("id", Id(), primary_key=True),
    Column("customer_id", Id(), ForeignKey("customers.id"), nullable=False, index=True),
    Column("subscription_id", Id(), ForeignKey("subscriptions.id"), nullable=False, index=True),
    Column("purpose", String(16), nullable=False),  # purchase | renewal | retry
    Column("period_index", Integer, nullable=False),
    Column("period_start", UTCDateTime, nullable=True),
    Column("period_end", UTCDateTime, nullable=True),
    Column("price_amount", MinorUnits, nullable=False),
    Column("tax_amount", MinorUnits, nullable=False),
    Column("credit_applied", MinorUnits, nullable=False),
    Column("amount", MinorUnits, nullable=False),  # charged to the payment method: price + tax - credit
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("failure_code", String(64), nullable=True),
    Column("refunded_amount", MinorUnits, nullable=False),
    Column("payment_method", String(255), nullable=False),
    Column("gateway", String(16), nullable=False),
    Column("gateway_payment_id", String(255), nullable=True, unique=True),
    Column("client_secret", String(255), nullable=True),
    # Derived from our ids (subscription, period, attempt): a retried call never charges twice.
    Column("idempotency_key", String(120), nullable=False, unique=True),
    Column("policy_version", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # B1: a purchase failed or abandoned while its PaymentIntent could still succeed: real time (the system clock)
    # from which it is (again) due to be cancelled at the gateway; null once the gateway confirmed it (or none is
    # needed). The cancellation job's lease moves it on by a few minutes before each call.
    Column("gateway_cancel_due_at", UTCDateTime, nullable=True),
    # B1: how many times the gateway refused that cancellation; at a cap it is given up (`payment.cancel_failed`).
    Column("gateway_cancel_refusals", Integer, nullable=False, server_default=text("0")),
    # I1: the payment's invoice, set in the transaction that recorded its success (null before, and for a payment
    # that succeeded before invoices existed).
    Column("invoice_id", Id(), nullable=True),
    CheckConstraint(one_of("status", PaymentStatus), name="status"),
    CheckConstraint("amount >= 0 AND tax_amount >= 0 AND credit_applied >= 0", name="amounts_not_negative"),
    CheckConstraint("refunded_amount >= 0 AND refunded_amount <= amount", name="refund_within_amount"),
    Index(
        "ix_payments_gateway_cancel_due",
        "gateway_cancel_due_at",
        sqlite_where=text("gateway_cancel_due_at IS NOT NULL"),
        postgresql_where=text("gateway_cancel_due_at IS NOT NULL"),
    ),
)

# The sandbox gateway's own books, standing in for Stripe's: one row per idempotency key, written in its own
# transaction (like a call to an outside system), so a repeated charge returns the first result.
sandbox_charges = Table(
    "sandbox_charges",
    metadata,
    Column("idempotency_key", String(120), primary_key=True),
    Column("payment_intent_id", String(64), nullable=False, unique=True),
    Column("amount", MinorUnits, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("payment_method", String(255), nullable=False),
    Column("status", String(24), nullable=False),
    Column("decline_code", String(64), nullable=True),
    Column("refunded_amount", MinorUnits, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# The sandbox gateway's refunds, standing in for Stripe's: one row per idempotency key (our refund id), written in
# the transaction that moves the charge's `refunded_amount`, so a refund repeated with its key (R2: the retry job)
# returns the first result and moves no money. A refusal is kept too, as Stripe keeps an error under its key.
sandbox_refunds = Table(
    "sandbox_refunds",
    metadata,
    Column("idempotency_key", String(120), primary_key=True),
    Column(
        "payment_intent_id", String(64), ForeignKey("sandbox_charges.payment_intent_id"), nullable=False, index=True
    ),
    Column("amount", MinorUnits, nullable=False),
    Column("refund_id", String(64), nullable=True, unique=True),  # null when refused
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),  # real time (the system clock)
    CheckConstraint("status IN ('succeeded', 'failed')", name="status"),
)

# Every inbound Stripe event, unique on its id, stored in the transaction that applies it (exactly once).
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("type", String(100), nullable=False),
    Column("object_id", String(255), nullable=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("note", Text, nullable=True),
)
