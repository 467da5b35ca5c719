from __future__ import annotations

import datetime as _dt
from typing import Literal

from pydantic import BaseModel

from app.schemas import PositiveAmount, Reason, RequestModel


class RefundCreate(RequestModel):
    amount: PositiveAmount
    reason: Reason


class Refund(BaseModel):
    object: Literal["refund"] = "refund"
    id: str
    payment_id: str
    customer_id: str
    amount: int
    currency: str
    reason: str
    created_by: str
    source: Literal["ops", "gateway", "correction"]  # correction: B1, refunded in full automatically
    status: Literal["pending", "succeeded", "failed"]
    gateway_refund_id: str | None
    created_at: _dt.datetime


class RefundList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Refund]
    has_more: bool


def to_api(row) -> dict:  # noqa: ANN001
    return {
        "object": "refund",
        "id": row.id,
        "payment_id": row.payment_id,
        "customer_id": row.customer_id,
        "amount": row.amount,
        "currency": row.currency,
        "reason": row.reason,
        "created_by": row.created_by,
        "source": row.source,
        "status": row.status,
        "gateway_refund_id": row.gateway_refund_id,
        "created_at": row.created_at,
    }
