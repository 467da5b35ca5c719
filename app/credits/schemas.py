from __future__ import annotations

import datetime as _dt
from typing import Literal

from pydantic import BaseModel

from app.schemas import Currency, PositiveAmount, Reason, RequestModel


class CreditCreate(RequestModel):
    amount: PositiveAmount
    currency: Currency
    reason: Reason


class Credit(BaseModel):
    object: Literal["credit"] = "credit"
    id: str
    customer_id: str
    kind: Literal["grant", "spend", "forfeit"]
    amount: int
    currency: str
    reason: str | None
    created_by: str
    payment_id: str | None
    created_at: _dt.datetime


class CreditList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Credit]
    has_more: bool
    balances: dict[str, int]


def to_api(row) -> dict:  # noqa: ANN001
    return {
        "object": "credit",
        "id": row.id,
        "customer_id": row.customer_id,
        "kind": row.kind,
        "amount": row.amount,
        "currency": row.currency,
        "reason": row.reason,
        "created_by": row.created_by,
        "payment_id": row.payment_id,
        "created_at": row.created_at,
    }
