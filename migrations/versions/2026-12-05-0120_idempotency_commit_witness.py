"""Issue 14 item 14: an idempotent request's transactions record, in the same transaction, that they committed
(`idempotency_keys.last_commit`: the number, within the request, of its last transaction that committed). When
the connection is lost after a COMMIT was sent and before its answer, this tells afterwards whether it committed:
the key is then released for the client's retry (it did not) or kept, its effect made once (it did).

Revision ID: 0010_idempotency_witness
Revises: 0009_b1_corrections
Created: 2026-12-05 01:00:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_idempotency_witness"
down_revision = "0009_b1_corrections"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("last_commit", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("last_commit")
