"""Subscriptions, payments, the sandbox gateway ledger and the webhook inbox (B1-B5, C1, C2, P2).

Revision ID: 0003_subscriptions_payments
Revises: 0002_trials_notices
Created: 2026-11-29 15:41:12.777198+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.models.base import UTCDateTime


revision = '0003_subscriptions_payments'
down_revision = '0002_trials_notices'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sandbox_charges',
    sa.Column('idempotency_key', sa.String(length=120), nullable=False),
    sa.Column('payment_intent_id', sa.String(length=64), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('payment_method', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('decline_code', sa.String(length=64), nullable=True),
    sa.Column('refunded_amount', sa.BigInteger(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('idempotency_key', name=op.f('pk_sandbox_charges')),
    sa.UniqueConstraint('payment_intent_id', name=op.f('uq_sandbox_charges_payment_intent_id'))
    )
    op.create_table('webhook_events',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('object_id', sa.String(length=255), nullable=True),
    sa.Column('received_at', UTCDateTime(), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_events'))
    )
    op.create_table('subscriptions',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('customer_id', sa.String(length=40), nullable=False),
    sa.Column('plan_id', sa.String(length=40), nullable=False),
    sa.Column('plan_code', sa.String(length=64), nullable=False),
    sa.Column('interval', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('price_amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('tax_amount', sa.BigInteger(), nullable=False),
    sa.Column('payment_method', sa.String(length=255), nullable=False),
    sa.Column('anchor_at', UTCDateTime(), nullable=True),
    sa.Column('period_index', sa.Integer(), nullable=False),
    sa.Column('current_period_start', UTCDateTime(), nullable=True),
    sa.Column('current_period_end', UTCDateTime(), nullable=True),
    sa.Column('cancel_at_period_end', sa.Boolean(), nullable=False),
    sa.Column('canceled_at', UTCDateTime(), nullable=True),
    sa.Column('ended_at', UTCDateTime(), nullable=True),
    sa.Column('ended_reason', sa.String(length=16), nullable=True),
    sa.Column('failed_attempts', sa.Integer(), nullable=False),
    sa.Column('next_retry_at', UTCDateTime(), nullable=True),
    sa.Column('claimed_until', UTCDateTime(), nullable=True),
    sa.Column('policy_version', sa.String(length=32), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint("ended_reason IS NULL OR ended_reason IN ('canceled', 'payment_failed', 'terminated', 'erased')", name=op.f('ck_subscriptions_ended_reason')),
    sa.CheckConstraint("status IN ('incomplete', 'active', 'past_due', 'canceled')", name=op.f('ck_subscriptions_status')),
    sa.CheckConstraint('price_amount >= 0 AND tax_amount >= 0', name=op.f('ck_subscriptions_amounts_not_negative')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_subscriptions_customer_id_customers')),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], name=op.f('fk_subscriptions_plan_id_plans')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriptions'))
    )
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscriptions_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_subscriptions_incomplete', ['created_at'], unique=False, sqlite_where=sa.text("status = 'incomplete'"), postgresql_where=sa.text("status = 'incomplete'"))
        batch_op.create_index('ix_subscriptions_period_end_due', ['current_period_end'], unique=False, sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))
        batch_op.create_index('ix_subscriptions_retry_due', ['next_retry_at'], unique=False, sqlite_where=sa.text("status = 'past_due'"), postgresql_where=sa.text("status = 'past_due'"))
        batch_op.create_index('uq_subscriptions_live_customer', ['customer_id'], unique=True, sqlite_where=sa.text("status IN ('incomplete', 'active', 'past_due')"), postgresql_where=sa.text("status IN ('incomplete', 'active', 'past_due')"))

    op.create_table('payments',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('customer_id', sa.String(length=40), nullable=False),
    sa.Column('subscription_id', sa.String(length=40), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('period_index', sa.Integer(), nullable=False),
    sa.Column('period_start', UTCDateTime(), nullable=True),
    sa.Column('period_end', UTCDateTime(), nullable=True),
    sa.Column('price_amount', sa.BigInteger(), nullable=False),
    sa.Column('tax_amount', sa.BigInteger(), nullable=False),
    sa.Column('credit_applied', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('failure_code', sa.String(length=64), nullable=True),
    sa.Column('refunded_amount', sa.BigInteger(), nullable=False),
    sa.Column('payment_method', sa.String(length=255), nullable=False),
    sa.Column('gateway', sa.String(length=16), nullable=False),
    sa.Column('gateway_payment_id', sa.String(length=255), nullable=True),
    sa.Column('client_secret', sa.String(length=255), nullable=True),
    sa.Column('idempotency_key', sa.String(length=120), nullable=False),
    sa.Column('policy_version', sa.String(length=32), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name=op.f('ck_payments_status')),
    sa.CheckConstraint('amount >= 0 AND tax_amount >= 0 AND credit_applied >= 0', name=op.f('ck_payments_amounts_not_negative')),
    sa.CheckConstraint('refunded_amount >= 0 AND refunded_amount <= amount', name=op.f('ck_payments_refund_within_amount')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_payments_customer_id_customers')),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], name=op.f('fk_payments_subscription_id_subscriptions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('gateway_payment_id', name=op.f('uq_payments_gateway_payment_id')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_payments_idempotency_key'))
    )
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payments_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payments_subscription_id'), ['subscription_id'], unique=False)

    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('gateway_customer_id', sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('gateway_customer_id')

    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payments_subscription_id'))
        batch_op.drop_index(batch_op.f('ix_payments_customer_id'))

    op.drop_table('payments')
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_index('uq_subscriptions_live_customer', sqlite_where=sa.text("status IN ('incomplete', 'active', 'past_due')"), postgresql_where=sa.text("status IN ('incomplete', 'active', 'past_due')"))
        batch_op.drop_index('ix_subscriptions_retry_due', sqlite_where=sa.text("status = 'past_due'"), postgresql_where=sa.text("status = 'past_due'"))
        batch_op.drop_index('ix_subscriptions_period_end_due', sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))
        batch_op.drop_index('ix_subscriptions_incomplete', sqlite_where=sa.text("status = 'incomplete'"), postgresql_where=sa.text("status = 'incomplete'"))
        batch_op.drop_index(batch_op.f('ix_subscriptions_customer_id'))

    op.drop_table('subscriptions')
    op.drop_table('webhook_events')
    op.drop_table('sandbox_charges')

