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
from app.models.ops import credit_entries, refunds
from app.models.trials import notices, trial_exclusions, trials

__all__ = [
    "metadata", "customers", "plans", "idempotency_keys", "sandbox_clock", "audit_events", "events",
    "trials", "trial_exclusions", "notices", "subscriptions", "payments", "sandbox_charges", "sandbox_refunds",
    "webhook_events", "refunds", "credit_entries", "console_sessions",
]
