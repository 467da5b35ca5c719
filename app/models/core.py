"""Tables of the foundation: customers, plans, idempotency keys, the sandbox clock and the audit log."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
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

from app.models.base import APIDocument, Id, MinorUnits, UTCDateTime, metadata, one_of
from policies.states import CustomerStatus, Interval, Tier

customers = Table(
    "customers",
    metadata,
    Column("id", Id(), primary_key=True),
    Column("external_id", String(255), nullable=True, unique=True),  # null once erased (D3)
    Column("email", String(320), nullable=True),
    Column("name", String(200), nullable=True),
    Column("country", String(2), nullable=True),
    Column("marketing_opt_out", Boolean, nullable=False, default=False),
    Column("gateway_customer_id", String(255), nullable=True),  # the payment gateway's customer for this one
    # I1/P1: the billing address {line1, line2, city, postal_code, region} and a VAT or GST number, both optional
    Column("address", JSON, nullable=True),
    Column("tax_id", String(32), nullable=True),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint(one_of("status", CustomerStatus), name="status"),
)

plans = Table(
    "plans",
    metadata,
    Column("id", Id(), primary_key=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("tier", String(16), nullable=False),
    Column("interval", String(8), nullable=False),
    Column("amount", MinorUnits, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("trial_available", Boolean, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint(one_of("tier", Tier), name="tier"),
    CheckConstraint(one_of("interval", Interval), name="interval"),
    CheckConstraint("amount >= 0", name="amount_not_negative"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("caller", String(300), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("response_status", Integer, nullable=True),
    Column("response_headers", JSON, nullable=True),
    Column("response_body", LargeBinary, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    # The number, within the request, of its last transaction that committed (written in that transaction): what
    # tells whether a COMMIT whose answer was lost took effect (app/idempotency.py).
    Column("last_commit", Integer, nullable=True),
    CheckConstraint("status IN ('in_progress', 'completed')", name="status"),
    Index(None, "expires_at"),
)

sandbox_clock = Table(
    "sandbox_clock",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("now", UTCDateTime, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Id(), primary_key=True),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("actor_role", String(16), nullable=False),
    Column("action", String(64), nullable=False),
    Column("customer_id", Id(), ForeignKey("customers.id"), nullable=True, index=True),
    Column("subject_type", String(32), nullable=False),
    Column("subject_id", String(40), nullable=False),
    Column("reason", Text, nullable=True),
    Column("data", JSON, nullable=False),
    Column("policy_version", String(32), nullable=True),
)

# Domain events (api.md "Events and outbound webhooks"): what happened, written in the transaction of the change
# (`app.audit.service.record`), the changed object as its own GET shows it in `data.object`. The outbox that
# outbound webhooks deliver: ids are time-ordered, so "not delivered since" is an id or `created_at` range scan.
events = Table(
    "events",
    metadata,
    Column("id", Id(), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("customer_id", Id(), ForeignKey("customers.id"), nullable=True),  # null for non-customer events
    Column("created_at", UTCDateTime, nullable=False),
    Column("data", APIDocument, nullable=False),  # {"object": ...}, encoded as the API answers
    Index("ix_events_created_at", "created_at"),
    Index("ix_events_customer_id", "customer_id", "id"),
)
