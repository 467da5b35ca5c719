"""The refusals of `policies.customer_may` (R3, D3) raised through the one refusal mapping (`app.errors.refuse_unless`):
one line in every use case that first asks about the customer's standing."""

from __future__ import annotations

from app.errors import refuse_unless
from policies import CustomerAction, customer_may

# D3: an erased customer is refused as a correction of a path that names no one any more.
_ERASED = [{"field": "customer_id", "location": "path", "message": "the customer was erased"}]


def require_standing(action: CustomerAction, status: str) -> None:
    """Raise the refusal of `policies.customer_may(action, status)`, if it refuses."""
    decision = customer_may(action, status)
    if decision.code == "customer_erased":
        refuse_unless(decision, cite_rule=False, errors=_ERASED)
    refuse_unless(decision, cite_rule=False)
