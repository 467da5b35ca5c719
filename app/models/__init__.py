"""Every table, so that Alembic and the services see one metadata."""

from app.models.base import metadata
from app.models.billing import payments, sandbox_charges, sandbox_refunds, subscriptions, webhook_events
from app.models.console import console_sessions
from app.models.core import (
    audit_events,
    customers,
    events,
    idempotency_keys,
    plans,
    sandbox_clock,
)
from app.models.credits import credit_entries
from app.models.invoices import credit_notes, document_counters, invoices
from app.models.notices import notices
from app.models.plan_changes import plan_changes
from app.models.refunds import refunds
from app.models.trials import trial_exclusions, trials

__all__ = [
    "audit_events",
    "console_sessions",
    "credit_entries",
    "credit_notes",
    "customers",
    "document_counters",
    "events",
    "idempotency_keys",
    "invoices",
    "metadata",
    "notices",
    "payments",
    "plan_changes",
    "plans",
    "refunds",
    "sandbox_charges",
    "sandbox_clock",
    "sandbox_refunds",
    "subscriptions",
    "trial_exclusions",
    "trials",
    "webhook_events",
]
