from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from app.models import subscriptions
from app.schemas import From, Given, ListOf, Money, RequestModel, reader, serialiser
from policies import SubscriptionFacts, subscription_at
from policies.states import EndedReason, SubscriptionStatus

PaymentMethodId = Field(min_length=3, max_length=255, pattern=r"^pm_[A-Za-z0-9_]+$")


class SubscriptionCreate(RequestModel):
    customer_id: str = Field(min_length=1, max_length=40)
    plan: str = Field(min_length=1, max_length=64)
    payment_method: str = PaymentMethodId


class PaymentMethodUpdate(RequestModel):
    payment_method: str = PaymentMethodId


class PendingChange(BaseModel):
    plan: str
    price: Money
    effective_at: _dt.datetime | None  # C3: the current period end; null while a C4 change waits for action
    expires_at: _dt.datetime | None = None  # C4: 23 h, or the period end if sooner
    client_secret: str | None = None  # C4: the payment waiting for the customer's action


class Subscription(BaseModel):
    object: Literal["subscription"] = "subscription"
    id: str
    customer_id: str
    plan: Annotated[str, From("plan_code")]
    status: SubscriptionStatus
    price: Annotated[Money, From(amount="price_amount", currency="currency")]
    tax: Annotated[Money, From(amount="tax_amount", currency="currency")]
    payment_method: str
    current_period_start: _dt.datetime | None
    current_period_end: _dt.datetime | None
    cancel_at_period_end: bool
    canceled_at: _dt.datetime | None
    ended_at: _dt.datetime | None
    ended_reason: EndedReason | None
    next_retry_at: _dt.datetime | None
    # Only in the response that created it (the card's confirmation, B1); not stored with the subscription.
    client_secret: Annotated[str | None, Given()] = None
    # C3/C4: the plan change waiting for the period end or for the customer's action (GET and the change routes
    # show it; app/plan_changes); not stored with the subscription.
    pending_change: Annotated[PendingChange | None, Given()] = None
    policy_version: str
    created_at: _dt.datetime


class SubscriptionList(ListOf[Subscription]):
    pass


# B2/C1: what places a subscription's periods, beyond its status and stored period end (`subscription_facts`).
PERIOD_COLUMNS = (
    subscriptions.c.anchor_at,
    subscriptions.c.interval,
    subscriptions.c.period_index,
    subscriptions.c.anchor_index,  # C3
    subscriptions.c.current_period_start,
    subscriptions.c.cancel_at_period_end,
    subscriptions.c.canceled_at,
    subscriptions.c.ended_at,
    subscriptions.c.ended_reason,
)


# SubscriptionFacts' fields, in their order, and the columns they come from (checked at import).
_FACT_COLUMNS = {
    "status": "status",
    "anchor_at": "anchor_at",
    "interval": "interval",
    "period_index": "period_index",
    "period_start": "current_period_start",
    "period_end": "current_period_end",
    "cancel_at_period_end": "cancel_at_period_end",
    "canceled_at": "canceled_at",
    "ended_at": "ended_at",
    "ended_reason": "ended_reason",
    "anchor_index": "anchor_index",
}
if list(_FACT_COLUMNS) != [f.name for f in dataclasses.fields(SubscriptionFacts)]:
    raise TypeError("_FACT_COLUMNS must list SubscriptionFacts' fields in their order")
_facts = reader(subscriptions, *_FACT_COLUMNS.values())


def subscription_facts(row) -> SubscriptionFacts:  # noqa: ANN001
    """The stored subscription, for `policies.subscription_at` (B2/C1)."""
    return SubscriptionFacts(*_facts(row))


_stored = serialiser(Subscription, subscriptions)


def to_api(
    row,  # noqa: ANN001 - a subscriptions row or snapshot
    client_secret: str | None = None,
    *,
    now: _dt.datetime | None = None,
    pending_change: dict | None = None,
) -> dict:
    """The subscription as stored or, given `now`, as it stands then (B2/C1, `policies.subscription_at`): from a
    period-end instant in its next period (or ended by a cancellation), whether or not the jobs have run yet."""
    api = _stored(row, client_secret=client_secret, pending_change=pending_change)
    if now is not None:
        state = subscription_at(subscription_facts(row), now)
        api["status"] = state.status
        api["current_period_start"] = state.period_start
        api["current_period_end"] = state.period_end
        api["ended_at"] = state.ended_at
        api["ended_reason"] = state.ended_reason
    return api


def as_read(row, now: _dt.datetime) -> dict:  # noqa: ANN001
    """The subscription as its GET shows it at `now` (a domain event's object)."""
    return to_api(row, now=now if row.status == "active" else None)
