"""B2/B5/C1/R1/R3/T3: renewal, failed-charge retries, end-of-period cancellation and access."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from ._checks import require_aware, require_int, require_optional_aware
from .document import PolicyDocument

CUSTOMER_STATUSES = frozenset({"active", "suspended", "terminated", "erased"})
TRIAL_STATUSES = frozenset({"active", "expired", "forfeited", "terminated"})
SUBSCRIPTION_STATUSES = frozenset({"incomplete", "active", "past_due", "canceled"})


@dataclass(frozen=True)
class FailureOutcome:
    """B5: where a subscription stands after a failed charge."""

    status: Literal["past_due", "ended"]
    next_retry_at: datetime | None
    ended_reason: str | None  # "payment_failed" when ended


def after_failed_charge(period_end: datetime, failures: int, policy: PolicyDocument) -> FailureOutcome:
    """B5: past_due with the next retry at period_end + retry_schedule_days[failures-1]; ended once exhausted.

    `failures` counts the failed attempts for this period including the one just made (1 = the renewal itself).
    """
    require_aware(period_end, "period_end")
    require_int(failures, "failures", minimum=1)
    schedule = policy.retry_schedule_days
    if failures <= len(schedule):
        return FailureOutcome("past_due", period_end + timedelta(days=schedule[failures - 1]), None)
    return FailureOutcome("ended", None, "payment_failed")


def renewal_due(status: str, cancel_at_period_end: bool, period_end: datetime, now: datetime) -> bool:
    """B2/C1: an active subscription without a scheduled cancellation renews once now >= period_end."""
    require_aware(period_end, "period_end")
    require_aware(now, "now")
    return status == "active" and not cancel_at_period_end and now >= period_end


def period_end_action(
    status: str, cancel_at_period_end: bool, period_end: datetime, now: datetime
) -> Literal["renew", "end", "none"]:
    """B2/C1: at/after the period end an active subscription renews, or ends if cancellation is scheduled."""
    require_aware(period_end, "period_end")
    require_aware(now, "now")
    if status != "active" or now < period_end:
        return "none"
    return "end" if cancel_at_period_end else "renew"


def cancellation_refund(amount_paid: int) -> int:
    """R1: cancelling refunds nothing, not the current period nor a part of it: always 0 (no proration)."""
    require_int(amount_paid, "amount_paid", minimum=0)
    return 0


@dataclass(frozen=True)
class AccessFacts:
    """R3/C1/B5/T3: what is stored about a customer's standing, trial and subscription."""

    customer_status: str  # active|suspended|terminated|erased
    trial_status: str | None = None
    trial_ends_at: datetime | None = None
    trial_plan: str | None = None
    subscription_status: str | None = None
    subscription_period_end: datetime | None = None
    subscription_plan: str | None = None

    def __post_init__(self) -> None:
        _known("customer_status", self.customer_status, CUSTOMER_STATUSES)
        if self.trial_status is not None:
            _known("trial_status", self.trial_status, TRIAL_STATUSES)
        if self.subscription_status is not None:
            _known("subscription_status", self.subscription_status, SUBSCRIPTION_STATUSES)
        require_optional_aware(self.trial_ends_at, "trial_ends_at")
        require_optional_aware(self.subscription_period_end, "subscription_period_end")


def _known(name: str, value: str, allowed: frozenset[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")


@dataclass(frozen=True)
class AccessDecision:
    """R3/C1/B5/T3: whether the customer may use paid features now, from what, and until when."""

    has_access: bool
    source: Literal["trial", "subscription"] | None
    plan: str | None
    until: datetime | None
    reason: str


def access(facts: AccessFacts, now: datetime) -> AccessDecision:
    """R3/C1/B5/T3: a non-active customer has none; an active/past_due subscription before its end; else a trial.

    The subscription wins over the trial; otherwise reason "no_subscription".
    """
    require_aware(now, "now")
    if facts.customer_status != "active":
        return AccessDecision(False, None, None, None, facts.customer_status)
    end = facts.subscription_period_end
    if facts.subscription_status in ("active", "past_due") and end is not None and now < end:
        reason = f"subscription_{facts.subscription_status}"
        return AccessDecision(True, "subscription", facts.subscription_plan, end, reason)
    if facts.trial_status == "active" and facts.trial_ends_at is not None and now < facts.trial_ends_at:
        return AccessDecision(True, "trial", facts.trial_plan, facts.trial_ends_at, "trial_active")
    return AccessDecision(False, None, None, None, "no_subscription")
