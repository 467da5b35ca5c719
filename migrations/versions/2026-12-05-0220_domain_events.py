"""Issue 15 item 5: domain events, recorded in the transaction of every state change through the audit trail's
recording point (`app.audit.service.record`): type, customer, time, and the changed object as its own GET shows
it. The outbox that outbound webhooks (issue 18) deliver; they add their deliveries table.

Revision ID: 0013_domain_events
Revises: 0012_cancel_refusals
Created: 2026-12-05 02:20:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.models.base import UTCDateTime

revision = "0013_domain_events"
down_revision = "0012_cancel_refusals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_events_customer_id_customers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_events_customer_id", ["customer_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_customer_id")
        batch_op.drop_index("ix_events_created_at")
    op.drop_table("events")
