"""R2/R3: discretionary refunds and credits by ops staff only, credits in the billing currency; nothing refunded on
termination."""

from __future__ import annotations

from collections.abc import Sequence

from ._checks import require_int
from .decision import Decision

STAFF_ROLE = "ops"


def _staff_checks(actor_role: str, amount: int, reason: str, what: str) -> Decision | None:
    require_int(amount, "amount")
    if actor_role != STAFF_ROLE:
        return Decision(False, "forbidden", "R2", f"Only ops staff may grant a {what}.")
    if not (reason or "").strip():
        return Decision(False, "reason_required", "R2", f"A reason is mandatory for every {what}.")
    if amount < 1:
        return Decision(False, "invalid_amount", "R2", f"A {what} must be at least 1 minor unit.")
    return None


def refund_decision(actor_role: str, paid_amount: int, already_refunded: int, amount: int, reason: str) -> Decision:
    """R2: ops only, reason mandatory, amount >= 1, and the total refunded never exceeds what was paid."""
    require_int(paid_amount, "paid_amount", minimum=0)
    require_int(already_refunded, "already_refunded", minimum=0)
    if already_refunded > paid_amount:
        raise ValueError(f"already_refunded ({already_refunded}) exceeds paid_amount ({paid_amount})")
    refused = _staff_checks(actor_role, amount, reason, "refund")
    if refused is not None:
        return refused
    if amount > paid_amount - already_refunded:
        left = paid_amount - already_refunded
        return Decision(False, "refund_exceeds_payment", "R2", f"Only {left} of this payment is left to refund.")
    return Decision(True, None, "R2", "Discretionary refund approved.")


def recorded_refund_decision(paid_amount: int, refunded_at_gateway: int, amount: int) -> Decision:
    """R2: a refund made outside the service (in Stripe's dashboard, learnt from its webhook) is a fact: it is
    recorded if it is at least 1 minor unit and, with the refunds the gateway has made already
    (`refunded_at_gateway`: the succeeded ones on the books, not those of ours still pending, which are only
    reserved), stays within what was paid. Who and why were decided in the dashboard; what is checked here is only
    that the fact is possible (the gateway never refunds more than was charged)."""
    require_int(paid_amount, "paid_amount", minimum=0)
    require_int(refunded_at_gateway, "refunded_at_gateway", minimum=0)
    require_int(amount, "amount")
    if amount < 1:
        return Decision(False, "invalid_amount", "R2", "A refund must be at least 1 minor unit.")
    if amount > paid_amount - refunded_at_gateway:
        left = max(paid_amount - refunded_at_gateway, 0)
        return Decision(False, "refund_exceeds_payment", "R2", f"Only {left} of this payment is left to refund.")
    return Decision(True, None, "R2", "Refund made at the gateway recorded.")


def reservations_released(
    paid_amount: int, refunded_at_gateway: int, pending: Sequence[tuple[str, int]]
) -> tuple[str, ...]:
    """R2: which of our pending refunds (id, amount; oldest first) can no longer be made once the gateway has
    refunded `refunded_at_gateway` of the payment: kept oldest first while they fit in what is left, the others
    are released (the gateway would refuse them: it never refunds more than was charged, and what it has refunded
    only grows). Released ones are failed and flagged for ops, never sent again."""
    require_int(paid_amount, "paid_amount", minimum=0)
    require_int(refunded_at_gateway, "refunded_at_gateway", minimum=0)
    left, released = paid_amount - refunded_at_gateway, []
    for refund_id, amount in pending:
        require_int(amount, "amount", minimum=1)
        if amount <= left:
            left -= amount
        else:
            released.append(refund_id)
    return tuple(released)


def credit_decision(actor_role: str, amount: int, reason: str) -> Decision:
    """R2: an account credit needs the ops role, a reason and an amount >= 1."""
    refused = _staff_checks(actor_role, amount, reason, "credit")
    if refused is not None:
        return refused
    return Decision(True, None, "R2", "Discretionary credit approved.")


def billing_currency(latest_subscription_currency: str | None, first_credit_currency: str | None) -> str | None:
    """R2: the customer's billing currency, in which every credit must be.

    It is the currency of their latest subscription, whatever its status (the one they are, or were last, billed
    in: an ended subscriber coming back is billed alike). A customer who has never had a subscription (say, a
    trialist) has none yet: their first credit may be in any currency and fixes it until they subscribe (so a
    second credit cannot split their balance). None means "not fixed yet: any currency is accepted".
    """
    return latest_subscription_currency if latest_subscription_currency is not None else first_credit_currency


def credit_currency_decision(currency: str, billing: str | None) -> Decision:
    """R2: a credit is in the customer's billing currency (`billing_currency`); one in another currency would
    never be spent, so it is refused (`currency_mismatch`). A customer without one yet takes any."""
    if billing is not None and currency != billing:
        return Decision(
            False,
            "currency_mismatch",
            "R2",
            f"A credit must be in the customer's billing currency ({billing}), not {currency}.",
        )
    return Decision(True, None, "R2", "The credit is in the customer's billing currency.")


def termination_refund() -> int:
    """R3: suspension or termination refunds nothing (no unused time, credits or fees): always 0."""
    return 0
