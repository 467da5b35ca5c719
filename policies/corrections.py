"""B1/R2/C1/R3: what a payment that succeeds at the gateway buys, and what is corrected when it buys nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._checks import require_int

B1_CORRECTION_REASON = "B1 correction: the payment succeeded after its purchase was abandoned; refunded in full"


@dataclass(frozen=True)
class SuccessOutcome:
    """B1/R2: what a succeeded charge does.

    `apply`: it pays for what it was made for (the purchase starts, the period renews);
    `refund`: it bought nothing and is refunded in full at once, automatically (B1, a correction, not R2);
    `book`: it bought nothing but is not a B1 case: recorded for ops, who may refund it (R2);
    `nothing`: it bought nothing and there is nothing left to give back (a free charge, or refunded already)."""

    action: Literal["apply", "refund", "book", "nothing"]
    refund_amount: int  # minor units, > 0 only for `refund`
    rule: str
    reason: str


def late_success(
    purpose: str, subscription_status: str, renews_next_period: bool, amount: int, refunded_amount: int
) -> SuccessOutcome:
    """B1/C1/R3: what a charge that succeeded buys. `purpose`: purchase, renewal or retry; `subscription_status`:
    its subscription's status now; `renews_next_period` (renewals and retries): it pays the next period of a running
    subscription with no cancellation confirmed after it was made; `amount`/`refunded_amount`: what was charged to
    the payment method and what of it is refunded already.

    - A purchase whose subscription still waits for it (`incomplete`) starts it (B1); a renewal or retry that
      renews the next period renews it (B2/B5).
    - A purchase that no longer waits for it (its payment failed, it expired or was cancelled, or the account was
      terminated meanwhile) bought nothing: B1 refunds what is left of it in full, at once, automatically. A
      charge of nothing (all paid by credit, which is spent only by a charge that buys something) has nothing to
      refund.
    - A renewal or retry that renews nothing is not a B1 case (B1 speaks of a purchase, or a C4 change, that no
      longer waits for its payment; R3 refunds nothing on termination): it is booked for ops to judge (R2)."""
    require_int(amount, "amount", minimum=0)
    require_int(refunded_amount, "refunded_amount", minimum=0)
    if refunded_amount > amount:
        raise ValueError(f"refunded_amount ({refunded_amount}) exceeds amount ({amount})")
    awaited = subscription_status == "incomplete" if purpose == "purchase" else renews_next_period
    if awaited:
        return SuccessOutcome("apply", 0, "B1", "The payment pays for what it was made for.")
    if purpose != "purchase":
        return SuccessOutcome("book", 0, "R2", "A renewal that renews nothing is recorded for ops to judge (R2).")
    left = amount - refunded_amount
    if left == 0:
        return SuccessOutcome("nothing", 0, "B1", "The purchase bought nothing and nothing is left to refund.")
    return SuccessOutcome("refund", left, "B1", B1_CORRECTION_REASON)
