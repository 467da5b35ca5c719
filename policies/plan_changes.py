"""C3/C4/C1/B2..B5/R1/R2/P2: plan changes at the period end (C3) and immediate upgrades (C4), without I/O.

The subscription is modelled by the facts these rules need (SubscriptionTerms, PendingChange), not by DB rows.
Every function returns a new value; nothing here refunds or credits anything (R1).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Context, Decimal
from typing import Literal

from ._checks import require_aware, require_int, require_optional_aware
from .decision import Decision
from .document import PolicyDocument
from .money import ChargeBreakdown, charge_breakdown
from .periods import Interval, add_periods, period_bounds

When = Literal["period_end", "now"]
FORFEIT_ROUNDING = ROUND_DOWN  # C4: the one named rounding rule for the forfeited value (information only)
ACTION_WINDOW = timedelta(hours=23)  # C4: a change waiting for the customer's action expires after this
_MONTHS = {"month": 1, "year": 12}
_STATUSES = frozenset({"incomplete", "active", "past_due", "canceled"})
_CUSTOMER_STATUSES = frozenset({"active", "suspended", "terminated", "erased"})


def _interval(value: str) -> str:
    if value not in _MONTHS:
        raise ValueError(f"interval must be 'month' or 'year', got {value!r}")
    return value


@dataclass(frozen=True)
class PlanOffer:
    """C3/C4/B3: a plan as listed the day a change is asked (its list price then, and whether it is active)."""

    plan: str
    price: int  # list price, minor units
    currency: str
    interval: Interval
    active: bool = True

    def __post_init__(self) -> None:
        require_int(self.price, "price", minimum=0)
        _interval(self.interval)


@dataclass(frozen=True)
class PendingChange:
    """C3/C4/B3: the one change waiting: the plan, its price locked the day it was asked, and when it applies.

    `when="period_end"` (C3): effective_at is the current period end, expires_at None.
    `when="now"` (C4, waiting for the customer's action): effective_at None, expires_at set.
    """

    when: When
    plan: str
    price: int  # B3: the new plan's list price of the day the change was asked, locked from then on
    currency: str
    interval: Interval
    asked_at: datetime
    effective_at: datetime | None = None
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.when not in ("period_end", "now"):
            raise ValueError(f"when must be 'period_end' or 'now', got {self.when!r}")
        require_int(self.price, "price", minimum=0)
        _interval(self.interval)
        require_aware(self.asked_at, "asked_at")
        require_optional_aware(self.effective_at, "effective_at")
        require_optional_aware(self.expires_at, "expires_at")
        if self.when == "period_end" and (self.effective_at is None or self.expires_at is not None):
            raise ValueError("a period-end change (C3) has an effective_at and no expires_at")
        if self.when == "now" and (self.effective_at is not None or self.expires_at is None):
            raise ValueError("an immediate change waiting for action (C4) has an expires_at and no effective_at")


@dataclass(frozen=True)
class SubscriptionTerms:
    """B2/B3/B4/C1/C3: what a subscription is on now: plan, locked price, anchor, current period, what is pending.

    At most one pending change (one field); a scheduled cancellation and a pending change exclude each other.
    """

    status: str  # incomplete|active|past_due|canceled
    plan: str
    price: int  # B3: the locked price of the current plan
    currency: str
    interval: Interval
    anchor: datetime  # B4: periods are counted from here
    current_period_start: datetime
    current_period_end: datetime
    cancel_at_period_end: bool = False
    pending_change: PendingChange | None = None

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ValueError(f"status must be one of {sorted(_STATUSES)}, got {self.status!r}")
        require_int(self.price, "price", minimum=0)
        _interval(self.interval)
        for name in ("anchor", "current_period_start", "current_period_end"):
            require_aware(getattr(self, name), name)
        if not self.anchor <= self.current_period_start < self.current_period_end:
            raise ValueError("need anchor <= current_period_start < current_period_end")
        pending = self.pending_change
        if pending is not None and self.cancel_at_period_end:
            raise ValueError("C1/C3: a scheduled cancellation and a pending change exclude each other")
        if pending is not None and pending.currency != self.currency:
            raise ValueError("C3: a pending change is in the subscription's currency")
        if pending is not None and pending.when == "period_end" and pending.effective_at != self.current_period_end:
            raise ValueError("C3: a period-end change takes effect at the current period end")


def yearly_value(price: int, interval: Interval) -> int:
    """C4: a price's value per year in minor units, as MRR normalises it: a monthly price x 12, a yearly price."""
    require_int(price, "price", minimum=0)
    return price * (12 // _MONTHS[_interval(interval)])


def is_upgrade(from_price: int, from_interval: Interval, to_price: int, to_interval: Interval) -> bool:
    """C4: the new price's yearly value is strictly higher than the current one's (integers, no ratio)."""
    return yearly_value(to_price, to_interval) > yearly_value(from_price, from_interval)


def change_decision(
    terms: SubscriptionTerms,
    customer_status: str,
    target: PlanOffer,
    when: When,
    now: datetime,
    policy: PolicyDocument,
) -> Decision:
    """C3/C4/R3/B5/B1: may this subscription move to `target`, at the period end or now? Codes as the API names.

    `terms` are the terms in force at `now` (terms_at). Order: ended, incomplete, past_due, customer suspended,
    same plan, plan not available (inactive or another currency), then for `now` only: not an upgrade (C4:
    yearly value of the locked price not strictly exceeded, or allow_immediate_upgrade off).
    """
    require_aware(now, "now")
    if when not in ("period_end", "now"):
        raise ValueError(f"when must be 'period_end' or 'now', got {when!r}")
    if customer_status not in _CUSTOMER_STATUSES:
        raise ValueError(f"customer_status must be one of {sorted(_CUSTOMER_STATUSES)}, got {customer_status!r}")
    if terms.status == "canceled" or customer_status in ("terminated", "erased"):
        return Decision(False, "subscription_ended", "C3", "The subscription has ended.")
    if terms.status == "incomplete":
        return Decision(False, "subscription_incomplete", "B1", "The subscription has not started: no paid period.")
    if terms.status == "past_due":
        return Decision(False, "subscription_past_due", "B5", "A renewal payment is outstanding.")
    if customer_status == "suspended":
        return Decision(False, "customer_suspended", "R3", "The account is suspended.")
    if target.plan == terms.plan:
        return Decision(False, "same_plan", "C3", "The subscription is already on this plan.")
    if not target.active or target.currency != terms.currency:
        return Decision(False, "plan_not_available", "C3", "This plan is not offered (inactive or another currency).")
    if when == "now" and not policy.allow_immediate_upgrade:
        return Decision(False, "not_an_upgrade", "C4", "Immediate plan changes are not offered.")
    if when == "now" and not is_upgrade(terms.price, terms.interval, target.price, target.interval):
        return Decision(False, "not_an_upgrade", "C4", "Only a plan of a higher yearly value can start at once.")
    rule = "C4" if when == "now" else "C3"
    return Decision(True, None, rule, "The plan change is allowed.")


def schedule_change(terms: SubscriptionTerms, target: PlanOffer, asked_at: datetime) -> SubscriptionTerms:
    """C3/B3/C1: the change waits for the current period end at today's list price, replacing any pending change
    and withdrawing a scheduled cancellation; plan, price, period and access stay as they are until then.
    """
    pending = PendingChange(
        "period_end",
        target.plan,
        target.price,
        target.currency,
        target.interval,
        require_aware(asked_at, "asked_at"),
        effective_at=terms.current_period_end,
    )
    return replace(terms, cancel_at_period_end=False, pending_change=pending)


def begin_immediate_change(terms: SubscriptionTerms, target: PlanOffer, asked_at: datetime) -> SubscriptionTerms:
    """C4/B1: an upgrade whose payment waits for the customer: it expires after 23 h or at the period end,
    whichever is first; until it is paid the old plan, price and period stay (nothing changed yet).
    """
    return replace(terms, cancel_at_period_end=False, pending_change=_immediate_pending(terms, target, asked_at))


def _immediate_pending(terms: SubscriptionTerms, target: PlanOffer, asked_at: datetime) -> PendingChange:
    expires_at = min(require_aware(asked_at, "asked_at") + ACTION_WINDOW, terms.current_period_end)
    return PendingChange(
        "now", target.plan, target.price, target.currency, target.interval, asked_at, expires_at=expires_at
    )


def pending_change_expired(pending: PendingChange, now: datetime) -> bool:
    """C4: a change waiting for the customer's action has expired once now >= expires_at (C3 ones never expire)."""
    require_aware(now, "now")
    return pending.expires_at is not None and now >= pending.expires_at


def withdraw_change(terms: SubscriptionTerms) -> SubscriptionTerms:
    """C3/C2: withdrawing the pending change: the subscription renews on its current plan as if none was asked."""
    return replace(terms, pending_change=None)


def schedule_cancellation(terms: SubscriptionTerms) -> SubscriptionTerms:
    """C1/C3: a cancellation at the period end withdraws the pending change."""
    return replace(terms, cancel_at_period_end=True, pending_change=None)


def change_charge(
    pending: PendingChange, country: str, policy: PolicyDocument, credit_balance: int = 0
) -> ChargeBreakdown:
    """C3/C4/B3/P2/R2: the new plan's locked price plus tax, credits spent first; never negative, never a refund.

    C4 charges this at once; C3's renewal at the period end charges it (and B5 retries it at the new price).
    """
    return charge_breakdown(pending.price, country, policy, credit_balance)


def next_period_terms(terms: SubscriptionTerms) -> SubscriptionTerms:
    """B2/B3/B4/C3/B5: the terms of the renewal at the current period end.

    A C3 change applies: the new plan at its locked price, its periods counted from that period end with the
    new plan's interval (the period end is the new anchor), even if the plan was deactivated since. Otherwise
    (or when a C4 change waiting for action is still pending: it expires at the period end) the same plan and
    price, the next period counted from the anchor. A failed renewal (B5) retries these terms' price.
    """
    pending, end = terms.pending_change, terms.current_period_end
    if pending is not None and pending.when == "period_end":
        start, new_end = period_bounds(end, pending.interval, 0)
        return replace(
            terms,
            plan=pending.plan,
            price=pending.price,
            interval=pending.interval,
            anchor=end,
            current_period_start=start,
            current_period_end=new_end,
            pending_change=None,
        )
    months = (end.year - terms.anchor.year) * 12 + end.month - terms.anchor.month
    index = months // _MONTHS[terms.interval]
    if add_periods(terms.anchor, terms.interval, index) != end:
        raise ValueError("B4: current_period_end is not a period boundary of the anchor")
    return replace(
        terms,
        current_period_start=end,
        current_period_end=add_periods(terms.anchor, terms.interval, index + 1),
        pending_change=None,
    )


def terms_at(terms: SubscriptionTerms, now: datetime) -> SubscriptionTerms:
    """B2/C1/C3: the terms in force at `now`, however late the scheduler runs: an active subscription past its
    period end is in its next period (a C3 change applied), or has ended if a cancellation was scheduled.
    """
    require_aware(now, "now")
    while terms.status == "active" and now >= terms.current_period_end:
        if terms.cancel_at_period_end:
            return replace(terms, status="canceled", pending_change=None)
        terms = next_period_terms(terms)
    return terms


@dataclass(frozen=True)
class ImmediateChange:
    """C4/R1: the subscription after an upgrade was paid, and what of the old period was forfeited (information)."""

    terms: SubscriptionTerms
    forfeited_days: int  # whole days of the old period left unused, rounded down
    forfeited_value: int  # old price x forfeited_days / the old period's days, FORFEIT_ROUNDING; never refunded


def forfeited(period_start: datetime, period_end: datetime, at: datetime, price: int) -> tuple[int, int]:
    """C4/R1: (whole days left unused at `at`, rounded down; their value = price x days / period days, rounded
    down), with days in [0, period days] and value in [0, price]. For information: nothing is refunded.
    """
    for name, moment in (("period_start", period_start), ("period_end", period_end), ("at", at)):
        require_aware(moment, name)
    require_int(price, "price", minimum=0)
    if not period_start <= at <= period_end:
        raise ValueError("C4: `at` must fall within the period")
    period_days = max((period_end - period_start) // timedelta(days=1), 1)
    days = min((period_end - at) // timedelta(days=1), period_days)
    numerator = price * days
    context = Context(prec=len(str(numerator)) + 2, rounding=FORFEIT_ROUNDING)
    value = context.divide(Decimal(numerator), Decimal(period_days)).quantize(Decimal(1), context=context)
    return days, int(value)


def complete_immediate_change(terms: SubscriptionTerms, pending: PendingChange, paid_at: datetime) -> ImmediateChange:
    """C4/B1/B4/R1: once the upgrade's payment succeeded at `paid_at`, the new plan at its locked price starts a
    new period there, which becomes the anchor; any scheduled cancellation or other change is gone; the unused
    rest of the old period is forfeited (neither refunded nor credited). A payment at or after the change's
    expiry bought nothing (B1): ValueError.
    """
    require_aware(paid_at, "paid_at")
    if pending.when != "now" or paid_at < pending.asked_at or pending_change_expired(pending, paid_at):
        raise ValueError("C4: this change is not an immediate one, or it expired before it was paid")
    days, value = forfeited(terms.current_period_start, terms.current_period_end, paid_at, terms.price)
    start, end = period_bounds(paid_at, pending.interval, 0)
    new_terms = replace(
        terms,
        status="active",
        plan=pending.plan,
        price=pending.price,
        interval=pending.interval,
        anchor=paid_at,
        current_period_start=start,
        current_period_end=end,
        cancel_at_period_end=False,
        pending_change=None,
    )
    return ImmediateChange(new_terms, days, value)


def immediate_change(
    terms: SubscriptionTerms, target: PlanOffer, asked_at: datetime, paid_at: datetime
) -> ImmediateChange:
    """C4: an upgrade asked at `asked_at` (today's list price locked) and paid at `paid_at` (often the same)."""
    return complete_immediate_change(terms, _immediate_pending(terms, target, asked_at), paid_at)
