"""B1/B2/B4/B5/C1/R3: what a charge's outcome does to its payment and its subscription (the settlement).

app/subscriptions/charging.py locks the rows, asks these functions and writes what they answer; nothing here
reads a row, the database or a clock: the facts and `now` come in as values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from .document import PolicyDocument
from .periods import period_bounds
from .states import EndedReason, Interval, PaymentPurpose, PaymentStatus, SubscriptionStatus
from .subscriptions import after_failed_charge, cancellation_ends_period, failure_with_cancellation

_SECOND = timedelta(seconds=1)


class Settlement(StrEnum):
    """B1/B5: what recording a gateway outcome on a payment does."""

    SUCCEED = "succeed"  # the charge succeeded: it starts or renews the subscription, or is booked (`late_success`)
    LATE_SUCCESS = "late_success"  # a payment given up on (failed) whose charge went through after all
    UNCHANGED = "unchanged"  # settled already (a repeat, a second replica, a late webhook): state moves forward only
    AWAIT_CUSTOMER = "await_customer"  # B1: a purchase waits for the customer's action (3-D Secure)
    FAIL = "fail"  # the charge failed (B1 for a purchase, B5 for a renewal or retry)


def settlement(payment_status: str, purpose: str, result_status: str) -> Settlement:
    """B1/B5: what a gateway outcome (`result_status`: succeeded, failed or requires_action) does to a payment.

    Only a pending payment is settled; a payment settled already changes no more, except a failed one whose charge
    the gateway took all the same (the subscription was ended while it was in flight): that success is recorded
    for the books (it grants nothing, `late_success` says what is corrected). A purchase that needs the customer's
    action stays pending; off-session (a renewal or retry) nobody can act, so it counts as a failure (B5)."""
    if payment_status != PaymentStatus.PENDING:
        if payment_status == PaymentStatus.FAILED and result_status == PaymentStatus.SUCCEEDED:
            return Settlement.LATE_SUCCESS
        return Settlement.UNCHANGED
    if result_status == PaymentStatus.SUCCEEDED:
        return Settlement.SUCCEED
    if result_status == "requires_action" and purpose == PaymentPurpose.PURCHASE:
        return Settlement.AWAIT_CUSTOMER
    return Settlement.FAIL


def failure_code(result_status: str, decline_code: str | None) -> str:
    """B5: the failure code recorded on a failed payment: the gateway's decline code, else
    `authentication_required` for an off-session charge that asked for the customer's action, else `failed`."""
    return decline_code or ("authentication_required" if result_status == "requires_action" else "failed")


def renews(
    subscription_status: str,
    period_index: int,
    cancel_at_period_end: bool,
    canceled_at: datetime | None,
    current_period_end: datetime | None,
    paid_period_index: int,
    charged_at: datetime,
) -> bool:
    """B2/B5/C1: a renewal or retry charge that succeeded moves the subscription to the period it paid for when
    that period (`paid_period_index`) is the next one of a running (active or past_due) subscription, and no
    cancellation was confirmed after the charge was made (`charged_at`: its outcome was unknown then, the gateway
    gave no answer) for the current period end. Such a cancellation was confirmed for that period end with no
    further charge: the charge is booked for ops to refund (R2) and grants nothing. One asked after the period end
    (B2: in the renewed period) does not stop the renewal that was due.

    Called once per payment of a renewal batch: it validates nothing, the rows it is given are stored facts."""
    if (
        subscription_status not in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
        or period_index + 1 != paid_period_index
    ):
        return False
    return not (
        canceled_at is not None
        and canceled_at >= charged_at
        and current_period_end is not None
        and cancellation_ends_period(cancel_at_period_end, canceled_at, current_period_end)
    )


@dataclass(frozen=True)
class PaidPeriod:
    """B1/B4: the period a successful charge pays for: the anchor it counts from, its index, start and end."""

    anchor: datetime
    index: int
    start: datetime
    end: datetime


def paid_period(
    purpose: str,
    now: datetime,
    interval: str,
    anchor_at: datetime | None,
    period_index: int,
    anchor_index: int = 0,
) -> PaidPeriod:
    """B1/B2/B4/B5: a purchase starts the subscription at its first successful payment (`now`), whose periods are
    anchored there (period 0); a renewal or retry pays for period `period_index`, counted from the acquisition
    anchor (a late retry does not move it). C3: a plan change at a period end re-anchors there; `anchor_index` is
    the index of the period that starts at `anchor_at`."""
    if purpose == PaymentPurpose.PURCHASE:
        anchor, index, anchor_index = now, 0, 0
    elif anchor_at is None:
        raise ValueError("a renewal or retry is of a subscription that has an anchor")
    else:
        anchor, index = anchor_at, period_index
    start, end = period_bounds(anchor, Interval(interval), index - anchor_index)
    return PaidPeriod(anchor, index, start, end)


def purchase_failure_ends(subscription_status: str) -> bool:
    """B1: a purchase whose payment fails leaves no active subscription and grants nothing: a subscription still
    waiting for that payment (`incomplete`) ends (canceled, reason payment_failed); one that no longer waits for it
    (ended meanwhile) is left as it is."""
    return subscription_status == SubscriptionStatus.INCOMPLETE


@dataclass(frozen=True)
class FailureTransition:
    """B5/C1: where a renewal or retry failure leaves a running subscription.

    `status` is past_due (retried at `next_retry_at`) or canceled (ended at `ended_at` for `ended_reason`);
    `outcome` is the B5 outcome as audited (past_due or ended); `failed_attempts` counts this failure."""

    status: SubscriptionStatus
    outcome: str
    failed_attempts: int
    next_retry_at: datetime | None
    ended_at: datetime | None
    ended_reason: EndedReason | None


def renewal_failure(
    subscription_status: str,
    failed_attempts: int,
    current_period_end: datetime,
    charge_released_at: datetime | None,
    cancel_at_period_end: bool,
    canceled_at: datetime | None,
    policy: PolicyDocument,
    now: datetime,
) -> FailureTransition | None:
    """B5/R3/C1/B2: a renewal or retry charge failed at `now`. None when its subscription is not running any more
    (not active or past_due: the failure is recorded and changes nothing).

    Otherwise B5: past_due with the next retry date (counted from a lifting that released the charge, R3), or
    ended (payment_failed) once the retries are spent. C1/B2: with a cancellation scheduled there is no retry:
    it ends with the period it was asked before the end of, or at this failure when asked after that end
    (`failure_with_cancellation`)."""
    if subscription_status not in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE):
        return None
    attempt = failed_attempts + 1
    outcome = after_failed_charge(current_period_end, attempt, policy, charge_released_at)
    ended_at = now
    cancelled = failure_with_cancellation(cancel_at_period_end, canceled_at, current_period_end, now)
    if cancelled is not None:
        outcome, ended_at = cancelled
    if outcome.status == "past_due":
        return FailureTransition(
            SubscriptionStatus.PAST_DUE, outcome.status, attempt, outcome.next_retry_at, None, None
        )
    return FailureTransition(
        SubscriptionStatus.CANCELED,
        outcome.status,
        attempt,
        None,
        ended_at,
        EndedReason(outcome.ended_reason or EndedReason.PAYMENT_FAILED),
    )


def charge_in_flight(claimed_until: datetime | None, wall: datetime) -> int | None:
    """C1: a cancellation is confirmed for the period end it names, with no further charge. While a charge for the
    subscription is in flight (a purchase, a renewal or a retry holds its lease, `claimed_until`, until after
    `wall`, the real time), its outcome decides which period that is: the cancellation is refused for the moment.
    Returns the whole seconds to wait (rounded up), or None when no charge is in flight."""
    if claimed_until is None or claimed_until <= wall:
        return None
    return -((wall - claimed_until) // _SECOND)
