"""The notice outbox."""

from __future__ import annotations

from sqlalchemy import (
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

from app.models.base import Id, UTCDateTime, metadata, one_of
from policies.states import NoticeCategory, NoticeStatus

# The notice outbox (T3, T4, B5, C1, receipts): created once, in the transaction of the change that causes it
# (unique `dedupe_key`), delivered later by a job.
notices = Table(
    "notices",
    metadata,
    Column("id", Id(), primary_key=True),
    Column("customer_id", Id(), ForeignKey("customers.id"), nullable=False, index=True),
    Column("type", String(32), nullable=False),
    Column("category", String(16), nullable=False),
    Column("dedupe_key", String(120), nullable=False, unique=True),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    CheckConstraint(one_of("category", NoticeCategory), name="category"),
    CheckConstraint(one_of("status", NoticeStatus), name="status"),
    Index(
        "ix_notices_delivery_due",
        "next_attempt_at",
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
)
