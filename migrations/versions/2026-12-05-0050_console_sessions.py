"""The ops console's sessions live on the server (`console_sessions`): the browser's cookie holds only a random
session id, the table only its SHA-256, so signing out or revoking ends a session for every copy of the cookie.

Revision ID: 0007_console_sessions
Revises: 0006_refund_retries
Created: 2026-12-05 00:50:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.models.base import UTCDateTime

revision = "0007_console_sessions"
down_revision = "0006_refund_retries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("console_sessions",
    sa.Column("id_hash", sa.String(length=64), nullable=False),
    sa.Column("staff", sa.String(length=255), nullable=False),
    sa.Column("role", sa.String(length=16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint("role = 'ops'", name=op.f("ck_console_sessions_role")),
    sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_console_sessions"))
    )
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_console_sessions_staff"), ["staff"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_sessions_staff"))
    op.drop_table("console_sessions")
