from __future__ import annotations

import datetime as _dt
from typing import Literal

from pydantic import BaseModel


class Payment(BaseModel):
    object: Literal["payment"] = "payment"
    id: str
    customer_id: str
    subscription_id: str
    purpose: Literal["purchase", "renewal", "retry", "upgrade"]  # upgrade: C4 (issue 16)
    amount: int
    price_amount: int
    tax_amount: int
    credit_applied: int
    currency: str
    status: Literal["pending", "succeeded", "failed"]
    failure_code: str | None
    refunded_amount: int
    period_start: _dt.datetime | None
    period_end: _dt.datetime | None
    gateway: Literal["sandbox", "stripe"]
    gateway_payment_id: str | None
    policy_version: str
    created_at: _dt.datetime


class PaymentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Payment]
    has_more: bool


def to_api(row) -> dict:  # noqa: ANN001
    return {
        "object": "payment",
        "id": row.id,
        "customer_id": row.customer_id,
        "subscription_id": row.subscription_id,
        "purpose": row.purpose,
        "amount": row.amount,
        "price_amount": row.price_amount,
        "tax_amount": row.tax_amount,
        "credit_applied": row.credit_applied,
        "currency": row.currency,
        "status": row.status,
        "failure_code": row.failure_code,
        "refunded_amount": row.refunded_amount,
        "period_start": row.period_start,
        "period_end": row.period_end,
        "gateway": row.gateway,
        "gateway_payment_id": row.gateway_payment_id,
        "policy_version": row.policy_version,
        "created_at": row.created_at,
    }
