"""Tables of the trial offer (T1-T7)."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    String,
    Table,
    text,
)

from app.models.base import Id, UTCDateTime, metadata, one_of
from policies.states import TrialStatus

trials = Table(
    "trials",
    metadata,
    Column("id", Id(), primary_key=True),
    Column("customer_id", Id(), ForeignKey("customers.id"), nullable=False, index=True),
    Column("plan_id", Id(), ForeignKey("plans.id"), nullable=False),
    Column("plan_code", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("notice_at", UTCDateTime, nullable=False),
    Column("notice_sent_at", UTCDateTime, nullable=True),
    Column("ended_at", UTCDateTime, nullable=True),
    Column("policy_version", String(32), nullable=False),
    CheckConstraint(one_of("status", TrialStatus), name="status"),
    # Due-work indexes (T3, T4): a sweep reads only the trials that are due, whatever the table's size.
    Index(
        "ix_trials_notice_due",
        "notice_at",
        sqlite_where=text("status = 'active' AND notice_sent_at IS NULL"),
        postgresql_where=text("status = 'active' AND notice_sent_at IS NULL"),
    ),
    Index(
        "ix_trials_expiry_due",
        "ends_at",
        sqlite_where=text("status = 'active'"),
        postgresql_where=text("status = 'active'"),
    ),
)

# T5: one trial per person, ever. A row per identity of a person who has had a trial or a paid subscription:
# "customer:<id>" and "email:<normalised address>", stored only as a keyed hash (HMAC), so the mark survives
# erasure (D3) without keeping anything readable. The primary key makes a second trial impossible, also under
# concurrent requests on several replicas.
trial_exclusions = Table(
    "trial_exclusions",
    metadata,
    Column("identity", String(64), primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("kind IN ('trial', 'paid')", name="kind"),
)
