"""R3/D3/B5: what a customer's standing lets them (or staff for them) do, and how long a past-due subscription
keeps access."""

from __future__ import annotations

from enum import StrEnum

from .decision import Decision
from .document import PolicyDocument
from .states import CustomerStatus, SubscriptionStatus

# B5/C1: the live subscriptions that can give access: an active one, and a past_due one while retries remain (an
# incomplete one has not begun: its first payment has not succeeded). A subset of LIVE_SUBSCRIPTION, which stays
# the one definition of a live subscription.
SUBSCRIPTION_GIVING_ACCESS = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE})


class CustomerAction(StrEnum):
    """R3/D3: the use cases that first ask about the customer's standing."""

    BUY = "buy"  # R3: buy a subscription
    START_TRIAL = "start_trial"  # R3/T2: start a free trial
    GRANT_CREDIT = "grant_credit"  # R2/R3: staff grant a credit
    CHANGE_STANDING = "change_standing"  # R3: suspend, lift a suspension, terminate
    CORRECT_DETAILS = "correct_details"  # D2/D3: correct the customer's details


_ENDED = frozenset({CustomerStatus.TERMINATED, CustomerStatus.ERASED})


def customer_may(action: CustomerAction | str, status: str) -> Decision:
    """R3/D3: whether a customer of `status` may `action`.

    - R3: only an active account buys or starts a trial (a suspended, terminated or erased one cannot):
      refused with `customer_inactive`.
    - R3: a terminated or erased account is over: no credit is granted and its standing changes no more
      (refused with `customer_terminated`); an active or suspended one can be suspended (again), lifted or
      terminated.
    - D3: an erased customer has no details left to correct (refused with `customer_erased`).
    """
    action = CustomerAction(action)
    status = CustomerStatus(status)
    if action in (CustomerAction.BUY, CustomerAction.START_TRIAL):
        if status != CustomerStatus.ACTIVE:
            return Decision(False, "customer_inactive", "R3", f"the customer is {status}")
        return Decision(True, None, "R3", "the customer is active")
    if action == CustomerAction.GRANT_CREDIT:
        if status in _ENDED:
            return Decision(False, "customer_terminated", "R3", f"the account is {status}: no credit can be granted")
        return Decision(True, None, "R3", f"the account is {status}")
    if action == CustomerAction.CHANGE_STANDING:
        if status in _ENDED:
            return Decision(False, "customer_terminated", "R3", f"the account is {status}; it cannot change any more")
        return Decision(True, None, "R3", f"the account is {status}")
    if status == CustomerStatus.ERASED:
        return Decision(False, "customer_erased", "D3", "an erased customer has no details to correct")
    return Decision(True, None, "D2", "the customer's details can be corrected")


def past_due_grace_days(policy: PolicyDocument) -> int:
    """B5: a past-due subscription keeps access while retries remain, i.e. until its last retry date: the last
    entry of `retry_schedule_days` after the date the retries count from (`retries_counted_from`); none without
    retries."""
    schedule = policy.retry_schedule_days
    return schedule[-1] if schedule else 0
