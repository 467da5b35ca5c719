"""The plan changes table (C3, C4): each change asked, its plan and price locked the day it was asked (B3), and
what became of it. At most one is pending per subscription, held by the database."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, ForeignKey, Index, Integer, String, Table, text

from app.models.base import Id, MinorUnits, UTCDateTime, metadata, one_of
from policies.states import Interval, PlanChangeStatus

plan_changes = Table(
    "plan_changes",
    metadata,
    Column("id", Id(), primary_key=True),
    Column("subscription_id", Id(), ForeignKey("subscriptions.id"), nullable=False, index=True),
    Column("customer_id", Id(), ForeignKey("customers.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # `when` asked: period_end (C3) | now (C4)
    Column("status", String(16), nullable=False),
    Column("plan_id", Id(), ForeignKey("plans.id"), nullable=False),
    Column("plan_code", String(64), nullable=False),
    Column("interval", String(8), nullable=False),
    Column("price_amount", MinorUnits, nullable=False),  # B3: the list price of the day it was asked, locked
    Column("currency", String(3), nullable=False),
    Column("asked_at", UTCDateTime, nullable=False),
    Column("effective_at", UTCDateTime, nullable=True),  # C3: the period end it takes effect at
    Column("expires_at", UTCDateTime, nullable=True),  # C4: a change waiting for the customer's action
    Column("payment_id", Id(), ForeignKey("payments.id"), nullable=True),  # C4: its charge
    Column("decided_at", UTCDateTime, nullable=True),  # when it was applied, withdrawn, expired or failed
    # C4/R1: whole days of the old period left unused when the upgrade was paid, and their value (information)
    Column("forfeited_days", Integer, nullable=True),
    Column("forfeited_value", MinorUnits, nullable=True),
    Column("asked_by", String(255), nullable=False),
    Column("policy_version", String(32), nullable=False),
    CheckConstraint("kind IN ('period_end', 'now')", name="kind"),
    CheckConstraint(one_of("status", PlanChangeStatus), name="status"),
    CheckConstraint(one_of("interval", Interval), name="interval"),
    CheckConstraint("price_amount >= 0", name="price_not_negative"),
    # C3/C4: at most one pending change of each kind per subscription, also under concurrent requests (a C4 upgrade
    # waiting for the customer's action leaves a C3 change in place until it is paid: a decline changes nothing).
    Index(
        "uq_plan_changes_pending",
        "subscription_id",
        "kind",
        unique=True,
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
)
