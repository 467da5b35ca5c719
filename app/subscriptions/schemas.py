from __future__ import annotations

import datetime as _dt
from typing import Literal

from pydantic import BaseModel, Field

from app.models import subscriptions
from app.schemas import Money, RequestModel
from policies import SubscriptionFacts, subscription_at

PaymentMethodId = Field(min_length=3, max_length=255, pattern=r"^pm_[A-Za-z0-9_]+$")


class SubscriptionCreate(RequestModel):
    customer_id: str = Field(min_length=1, max_length=40)
    plan: str = Field(min_length=1, max_length=64)
    payment_method: str = PaymentMethodId


class PaymentMethodUpdate(RequestModel):
    payment_method: str = PaymentMethodId


class Subscription(BaseModel):
    object: Literal["subscription"] = "subscription"
    id: str
    customer_id: str
    plan: str
    status: Literal["incomplete", "active", "past_due", "canceled"]
    price: Money
    tax: Money
    payment_method: str
    current_period_start: _dt.datetime | None
    current_period_end: _dt.datetime | None
    cancel_at_period_end: bool
    canceled_at: _dt.datetime | None
    ended_at: _dt.datetime | None
    ended_reason: Literal["canceled", "payment_failed", "terminated", "erased"] | None
    next_retry_at: _dt.datetime | None
    client_secret: str | None = None
    policy_version: str
    created_at: _dt.datetime


class SubscriptionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Subscription]
    has_more: bool


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


def subscription_facts(row) -> SubscriptionFacts:  # noqa: ANN001
    """The stored subscription, for `policies.subscription_at` (B2/C1)."""
    return SubscriptionFacts(
        status=row.status,
        anchor_at=row.anchor_at,
        interval=row.interval,
        period_index=row.period_index,
        period_start=row.current_period_start,
        period_end=row.current_period_end,
        cancel_at_period_end=row.cancel_at_period_end,
        canceled_at=row.canceled_at,
        ended_at=row.ended_at,
        ended_reason=row.ended_reason,
        anchor_index=row.anchor_index,  # C3
    )


def to_api(row, client_secret: str | None = None, *, now: _dt.datetime | None = None) -> dict:  # noqa: ANN001
    """The subscription as stored or, given `now`, as it stands then (B2/C1, `policies.subscription_at`): from a
    period-end instant in its next period (or ended by a cancellation), whether or not the jobs have run yet."""
    state = subscription_at(subscription_facts(row), now) if now is not None else None
    return {
        "object": "subscription",
        "id": row.id,
        "customer_id": row.customer_id,
        "plan": row.plan_code,
        "status": state.status if state else row.status,
        "price": {"amount": row.price_amount, "currency": row.currency},
        "tax": {"amount": row.tax_amount, "currency": row.currency},
        "payment_method": row.payment_method,
        "current_period_start": state.period_start if state else row.current_period_start,
        "current_period_end": state.period_end if state else row.current_period_end,
        "cancel_at_period_end": row.cancel_at_period_end,
        "canceled_at": row.canceled_at,
        "ended_at": state.ended_at if state else row.ended_at,
        "ended_reason": state.ended_reason if state else row.ended_reason,
        "next_retry_at": row.next_retry_at,
        "client_secret": client_secret,
        "pending_change": None,  # C3 (issue 16): shown by GET and the plan change routes (app/plan_changes)
        "policy_version": row.policy_version,
        "created_at": row.created_at,
    }


def as_read(row, now: _dt.datetime) -> dict:  # noqa: ANN001
    """The subscription as its GET shows it at `now` (a domain event's object)."""
    return to_api(row, now=now if row.status == "active" else None)
