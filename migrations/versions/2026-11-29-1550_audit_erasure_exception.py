"""The append-only audit log lets an erasure (D3) pseudonymise its actor and reason, and nothing else.

Revision ID: 0005_audit_erasure
Revises: 0004_refunds_credits
Created: 2026-11-29 15:50:00+00:00
"""

from __future__ import annotations

from alembic import op

revision = "0005_audit_erasure"
down_revision = "0004_refunds_credits"
branch_labels = None
depends_on = None

WITH_ERASURE = """CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('billing.erasure', true) = 'on'
       AND NEW.id = OLD.id AND NEW.occurred_at = OLD.occurred_at AND NEW.action = OLD.action
       AND NEW.actor_role = OLD.actor_role AND NEW.customer_id IS NOT DISTINCT FROM OLD.customer_id
       AND NEW.subject_type = OLD.subject_type AND NEW.subject_id = OLD.subject_id
       AND NEW.data::text = OLD.data::text
       AND NEW.policy_version IS NOT DISTINCT FROM OLD.policy_version
       AND (NEW.actor LIKE 'erased:%' OR NEW.actor = OLD.actor)
       AND (NEW.reason = '[erased]' OR NEW.reason IS NOT DISTINCT FROM OLD.reason) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only: % is refused', TG_OP;
END $$"""

STRICT = """CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % is refused', TG_OP;
END $$"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(WITH_ERASURE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(STRICT)
