"""Trials, the once-per-person exclusion marks (T5) and the notice outbox (T3, T4).

Revision ID: 0002_trials_notices
Revises: 0001_foundation
Created: 2026-11-29 15:36:48.122752+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.models.base import UTCDateTime


revision = '0002_trials_notices'
down_revision = '0001_foundation'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('trial_exclusions',
    sa.Column('identity', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint("kind IN ('trial', 'paid')", name=op.f('ck_trial_exclusions_kind')),
    sa.PrimaryKeyConstraint('identity', name=op.f('pk_trial_exclusions'))
    )
    op.create_table('notices',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('customer_id', sa.String(length=40), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('dedupe_key', sa.String(length=120), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('sent_at', UTCDateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', UTCDateTime(), nullable=False),
    sa.Column('lease_until', UTCDateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.CheckConstraint("category IN ('service', 'marketing')", name=op.f('ck_notices_category')),
    sa.CheckConstraint("status IN ('pending', 'sent', 'logged', 'skipped')", name=op.f('ck_notices_status')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_notices_customer_id_customers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notices')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_notices_dedupe_key'))
    )
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notices_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_notices_delivery_due', ['next_attempt_at'], unique=False, sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'"))

    op.create_table('trials',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('customer_id', sa.String(length=40), nullable=False),
    sa.Column('plan_id', sa.String(length=40), nullable=False),
    sa.Column('plan_code', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started_at', UTCDateTime(), nullable=False),
    sa.Column('ends_at', UTCDateTime(), nullable=False),
    sa.Column('notice_at', UTCDateTime(), nullable=False),
    sa.Column('notice_sent_at', UTCDateTime(), nullable=True),
    sa.Column('ended_at', UTCDateTime(), nullable=True),
    sa.Column('policy_version', sa.String(length=32), nullable=False),
    sa.CheckConstraint("status IN ('active', 'expired', 'forfeited', 'terminated')", name=op.f('ck_trials_status')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_trials_customer_id_customers')),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], name=op.f('fk_trials_plan_id_plans')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trials'))
    )
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_trials_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_trials_expiry_due', ['ends_at'], unique=False, sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))
        batch_op.create_index('ix_trials_notice_due', ['notice_at'], unique=False, sqlite_where=sa.text("status = 'active' AND notice_sent_at IS NULL"), postgresql_where=sa.text("status = 'active' AND notice_sent_at IS NULL"))


def downgrade() -> None:
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.drop_index('ix_trials_notice_due', sqlite_where=sa.text("status = 'active' AND notice_sent_at IS NULL"), postgresql_where=sa.text("status = 'active' AND notice_sent_at IS NULL"))
        batch_op.drop_index('ix_trials_expiry_due', sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))
        batch_op.drop_index(batch_op.f('ix_trials_customer_id'))

    op.drop_table('trials')
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.drop_index('ix_notices_delivery_due', sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'"))
        batch_op.drop_index(batch_op.f('ix_notices_customer_id'))

    op.drop_table('notices')
    op.drop_table('trial_exclusions')

