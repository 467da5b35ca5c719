from __future__ import annotations

import datetime as _dt
from typing import Literal

from pydantic import BaseModel, Field

from app.schemas import Money, RequestModel

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


def to_api(row, client_secret: str | None = None) -> dict:  # noqa: ANN001
    return {
        "object": "subscription", "id": row.id, "customer_id": row.customer_id, "plan": row.plan_code,
        "status": row.status, "price": {"amount": row.price_amount, "currency": row.currency},
        "tax": {"amount": row.tax_amount, "currency": row.currency}, "payment_method": row.payment_method,
        "current_period_start": row.current_period_start, "current_period_end": row.current_period_end,
        "cancel_at_period_end": row.cancel_at_period_end, "canceled_at": row.canceled_at,
        "ended_at": row.ended_at, "ended_reason": row.ended_reason, "next_retry_at": row.next_retry_at,
        "client_secret": client_secret, "policy_version": row.policy_version, "created_at": row.created_at,
    }
