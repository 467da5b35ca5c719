"""B2/B5/C1/R1/R3/T3: renewal, failed-charge retries, end-of-period cancellation and access."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from ._checks import require_aware, require_int, require_optional_aware
from .document import PolicyDocument
from .periods import period_bounds
from .states import Interval

CUSTOMER_STATUSES = frozenset({"active", "suspended", "terminated", "erased"})
TRIAL_STATUSES = frozenset({"active", "expired", "forfeited", "terminated"})
SUBSCRIPTION_STATUSES = frozenset({"incomplete", "active", "past_due", "canceled"})


@dataclass(frozen=True)
class FailureOutcome:
    """B5: where a subscription stands after a failed charge."""

    status: Literal["past_due", "ended"]
    next_retry_at: datetime | None
    ended_reason: str | None  # "payment_failed" when ended


def after_failed_charge(
    period_end: datetime, failures: int, policy: PolicyDocument, released_at: datetime | None = None
) -> FailureOutcome:
    """B5: past_due with the next retry at period_end + retry_schedule_days[failures-1]; ended once exhausted.

    `failures` counts the failed attempts for this period including the one just made (1 = the renewal itself).
    R3: when a suspension held a charge of this period, the retries count from its lifting (`released_at`, see
    `retries_counted_from`).
    """
    require_aware(period_end, "period_end")
    require_int(failures, "failures", minimum=1)
    base = retries_counted_from(period_end, released_at)
    schedule = policy.retry_schedule_days
    if failures <= len(schedule):
        return FailureOutcome("past_due", base + timedelta(days=schedule[failures - 1]), None)
    return FailureOutcome("ended", None, "payment_failed")


def failure_with_cancellation(
    cancel_at_period_end: bool, canceled_at: datetime | None, period_end: datetime, now: datetime
) -> tuple[FailureOutcome, datetime] | None:
    """C1/B2/B5: a renewal or retry charge failed while a cancellation is scheduled: the outcome and `ended_at`, or
    None when no cancellation is scheduled (B5 applies: `after_failed_charge`).

    - Asked before the stored period end (`cancellation_ends_period`: recorded while this charge's outcome was
      unknown): the subscription ends with that period, as it would have without the charge (ended_at =
      period_end, reason canceled, no retry).
    - Asked at or after it (B2: in the next period, the renewal due): the failure would make it past_due, and C1
      ends a past_due subscription at once when cancelled; the cancellation was asked before the failure, so it
      ends at the failure (ended_at = now, never before canceled_at), reason canceled, no retry.
    """
    require_aware(period_end, "period_end")
    require_aware(now, "now")
    require_optional_aware(canceled_at, "canceled_at")
    if not cancel_at_period_end:
        return None
    ended = FailureOutcome("ended", None, "canceled")
    if cancellation_ends_period(cancel_at_period_end, canceled_at, period_end):
        return ended, period_end
    return ended, max(now, canceled_at) if canceled_at is not None else now


def charge_held(customer_status: str) -> bool:
    """R3/B5: no renewal is charged while the customer is suspended, and neither is a retry of a failed renewal
    (a retry is that renewal's charge made again): a charge that falls due then waits, and is made at the first run
    after the suspension is lifted. Only an active customer is charged (a terminated or erased one has no running
    subscription left to charge: termination ends them and charges nothing).

    The periods keep running meanwhile and the anchor does not move (the suspended time is not given back): the
    held charge pays for the period it was due for, and each renewal that fell due meanwhile is charged in turn,
    as after any late run (B2). A retry that fell due meanwhile is made once, not once per missed date."""
    _known("customer_status", customer_status, CUSTOMER_STATUSES)
    return customer_status != "active"


def charge_due_at_lifting(
    status: str, cancel_at_period_end: bool, period_end: datetime | None, next_retry_at: datetime | None, now: datetime
) -> bool:
    """R3/B5: whether lifting a suspension at `now` releases a charge it held: the renewal of an active
    subscription without a scheduled cancellation whose period has ended, or the retry of a past-due one whose
    retry date has come. The retries after such a charge count from the lifting (`retries_counted_from`)."""
    require_aware(now, "now")
    require_optional_aware(period_end, "period_end")
    require_optional_aware(next_retry_at, "next_retry_at")
    if status == "active":
        return period_end is not None and renewal_due(status, cancel_at_period_end, period_end, now)
    return status == "past_due" and next_retry_at is not None and next_retry_at <= now


def retries_counted_from(period_end: datetime, released_at: datetime | None) -> datetime:
    """B5/R3: the retry dates (and the access that lasts while retries remain) count from the period end; when a
    suspension held a charge of this period, from the lifting instead (`released_at`, the lifting's time, recorded
    only when it released a held charge: `charge_due_at_lifting`). A lifting before this period's end (one of an
    earlier period) changes nothing."""
    require_aware(period_end, "period_end")
    require_optional_aware(released_at, "released_at")
    return period_end if released_at is None or released_at <= period_end else released_at


def cancellation_ends_period(cancel_at_period_end: bool, canceled_at: datetime | None, period_end: datetime) -> bool:
    """C1/B2: a scheduled cancellation ends the stored period only if it was asked before that period's end.

    One asked at or after the period-end instant (the renewal due but not charged yet, B2) was asked in the next
    period: that renewal is still made, and the cancellation takes effect at the end of the renewed period."""
    require_aware(period_end, "period_end")
    require_optional_aware(canceled_at, "canceled_at")
    return cancel_at_period_end and (canceled_at is None or canceled_at < period_end)


def renewal_due(
    status: str, cancel_at_period_end: bool, period_end: datetime, now: datetime, canceled_at: datetime | None = None
) -> bool:
    """B2/C1: an active subscription renews once now >= period_end, unless a cancellation asked before that
    period end is scheduled (one asked in the gap after it belongs to the next period: the renewal is made)."""
    require_aware(period_end, "period_end")
    require_aware(now, "now")
    return (
        status == "active"
        and now >= period_end
        and not cancellation_ends_period(cancel_at_period_end, canceled_at, period_end)
    )


def period_end_action(
    status: str, cancel_at_period_end: bool, period_end: datetime, now: datetime, canceled_at: datetime | None = None
) -> Literal["renew", "end", "none"]:
    """B2/C1: at/after the period end an active subscription renews, or ends if a cancellation asked before that
    period end is scheduled."""
    require_aware(period_end, "period_end")
    require_aware(now, "now")
    if status != "active" or now < period_end:
        return "none"
    return "end" if cancellation_ends_period(cancel_at_period_end, canceled_at, period_end) else "renew"


@dataclass(frozen=True)
class SubscriptionFacts:
    """B2/B4/C1: a subscription as stored (the jobs record renewals and period ends some time after they are due)."""

    status: str
    anchor_at: datetime | None
    interval: str
    period_index: int
    period_start: datetime | None
    period_end: datetime | None
    cancel_at_period_end: bool = False
    canceled_at: datetime | None = None
    ended_at: datetime | None = None
    ended_reason: str | None = None
    anchor_index: int = 0  # C3/B4: the period index whose start is anchor_at (a change at a period end re-anchors)

    def __post_init__(self) -> None:
        _known("status", self.status, SUBSCRIPTION_STATUSES)
        require_int(self.period_index, "period_index", minimum=0)
        require_int(self.anchor_index, "anchor_index", minimum=0)
        for name in ("anchor_at", "period_start", "period_end", "canceled_at", "ended_at"):
            require_optional_aware(getattr(self, name), name)


def _period_at(facts: SubscriptionFacts, at: datetime) -> tuple[int, datetime | None, datetime]:
    """B2/B4: (index, start, end) of the period containing `at`: the stored one, or one of the following periods,
    counted from the anchor."""
    anchor, index, start, end = facts.anchor_at, facts.period_index, facts.period_start, facts.period_end
    if anchor is None or end is None:
        raise ValueError("an active subscription has an anchor and a period end")
    while at >= end:
        index += 1
        start, end = period_bounds(anchor, Interval(facts.interval), index - facts.anchor_index)
    return index, start, end


def subscription_at(facts: SubscriptionFacts, now: datetime) -> SubscriptionFacts:
    """B2/C1: where an active subscription stands at `now`, whether or not the jobs have run.

    From each period-end instant it is in its next period (its renewal due, charged whenever the job runs), unless
    a cancellation takes effect there: then it has ended at that period end. A cancellation takes effect at the end
    of the period it was asked in, so one asked in the gap after a period end ends the renewed period. Anything
    but an active subscription past its stored period end is returned as it is."""
    require_aware(now, "now")
    if facts.status != "active" or facts.period_end is None or facts.anchor_at is None or now < facts.period_end:
        return facts
    if facts.cancel_at_period_end:
        index, start, end = (
            _period_at(facts, facts.canceled_at)
            if facts.canceled_at is not None
            else (facts.period_index, facts.period_start, facts.period_end)
        )
        if now >= end:
            return replace(
                facts,
                status="canceled",
                period_index=index,
                period_start=start,
                period_end=end,
                ended_at=end,
                ended_reason="canceled",
            )
    index, start, end = _period_at(facts, now)
    return replace(facts, period_index=index, period_start=start, period_end=end)


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
    # B2/C1: what places an active subscription's periods, to tell where it stands once its stored period end has
    # passed (renewal due but not charged yet, or a cancellation taking effect). Without it the stored period is
    # taken as it is.
    subscription: SubscriptionFacts | None = None
    # B5: how long a past_due subscription keeps access after its period end (until the last retry date).
    past_due_grace_days: int = 0

    def __post_init__(self) -> None:
        require_int(self.past_due_grace_days, "past_due_grace_days", minimum=0)
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
    """R3/C1/B2/B5/T3: a non-active customer has none; an active/past_due subscription before its end; else a trial.

    An active subscription's end is that of the period it is in at `now` (B2: from its period-end instant on, the
    next one, whether or not the renewal job has run; C1: a cancellation ends it at the end of the period it was
    asked in). A past_due one keeps access for `past_due_grace_days` after its period end (B5). The subscription
    wins over the trial; otherwise reason "no_subscription".
    """
    require_aware(now, "now")
    if facts.customer_status != "active":
        return AccessDecision(False, None, None, None, facts.customer_status)
    end = facts.subscription_period_end
    if facts.subscription_status == "past_due" and end is not None:
        end = end + timedelta(days=facts.past_due_grace_days)
    elif facts.subscription_status == "active" and facts.subscription is not None:
        state = subscription_at(facts.subscription, now)
        end = state.period_end if state.status == "active" else None
    if facts.subscription_status in ("active", "past_due") and end is not None and now < end:
        reason = f"subscription_{facts.subscription_status}"
        return AccessDecision(True, "subscription", facts.subscription_plan, end, reason)
    if facts.trial_status == "active" and facts.trial_ends_at is not None and now < facts.trial_ends_at:
        return AccessDecision(True, "trial", facts.trial_plan, facts.trial_ends_at, "trial_active")
    return AccessDecision(False, None, None, None, "no_subscription")
