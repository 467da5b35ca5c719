"""Issue 16: plan changes (C3, C4): the plan_changes table (at most one pending per subscription) and
`subscriptions.anchor_index`, the period index the anchor starts (a change at a period end re-anchors there).

Revision ID: 0015_plan_changes
Revises: 0014_invoices
Created: 2026-12-05 03:30:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.models.base import UTCDateTime

revision = "0015_plan_changes"
down_revision = "0014_invoices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("anchor_index", sa.Integer(), nullable=False, server_default=sa.text("0")))
    op.create_table(
        "plan_changes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("plan_id", sa.String(length=40), nullable=False),
        sa.Column("plan_code", sa.String(length=64), nullable=False),
        sa.Column("interval", sa.String(length=8), nullable=False),
        sa.Column("price_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("asked_at", UTCDateTime(), nullable=False),
        sa.Column("effective_at", UTCDateTime(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("forfeited_days", sa.Integer(), nullable=True),
        sa.Column("forfeited_value", sa.BigInteger(), nullable=True),
        sa.Column("asked_by", sa.String(length=255), nullable=False),
        sa.Column("policy_version", sa.String(length=32), nullable=False),
        sa.CheckConstraint("kind IN ('period_end', 'now')", name=op.f("ck_plan_changes_kind")),
        sa.CheckConstraint(
            "status IN ('pending', 'applied', 'withdrawn', 'expired', 'failed')", name=op.f("ck_plan_changes_status")
        ),
        sa.CheckConstraint("interval IN ('month', 'year')", name=op.f("ck_plan_changes_interval")),
        sa.CheckConstraint("price_amount >= 0", name=op.f("ck_plan_changes_price_not_negative")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_plan_changes_customer_id_customers")),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name=op.f("fk_plan_changes_payment_id_payments")),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], name=op.f("fk_plan_changes_plan_id_plans")),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["subscriptions.id"], name=op.f("fk_plan_changes_subscription_id_subscriptions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_changes")),
    )
    with op.batch_alter_table("plan_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_plan_changes_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_plan_changes_subscription_id"), ["subscription_id"], unique=False)
        batch_op.create_index(
            "uq_plan_changes_pending",
            ["subscription_id", "kind"],
            unique=True,
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("plan_changes", schema=None) as batch_op:
        batch_op.drop_index("uq_plan_changes_pending")
        batch_op.drop_index(batch_op.f("ix_plan_changes_subscription_id"))
        batch_op.drop_index(batch_op.f("ix_plan_changes_customer_id"))
    op.drop_table("plan_changes")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("anchor_index")
