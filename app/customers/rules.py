"""The refusals of `policies.customer_may` (R3, D3) as the domain errors the API maps: one line in every use case
that first asks about the customer's standing."""

from __future__ import annotations

from app.errors import CustomerInactive, CustomerTerminated, DomainError, ValidationFailed
from policies import CustomerAction, customer_may

_ERRORS: dict[str, type[DomainError]] = {
    "customer_inactive": CustomerInactive,
    "customer_terminated": CustomerTerminated,
}


def require_standing(action: CustomerAction, status: str) -> None:
    """Raise the refusal of `policies.customer_may(action, status)`, if it refuses."""
    decision = customer_may(action, status)
    if decision.allowed:
        return
    if decision.code == "customer_erased":  # D3: refused as a correction of a path that names no one any more
        raise ValidationFailed(
            decision.reason,
            errors=[{"field": "customer_id", "location": "path", "message": "the customer was erased"}],
        )
    raise _ERRORS[decision.code or ""](decision.reason)
