from __future__ import annotations

import datetime as _dt
from typing import Literal

from pydantic import BaseModel

from app.models import refunds
from app.schemas import ListOf, PositiveAmount, Reason, RequestModel, serialiser
from policies.states import RefundSource, RefundStatus


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
    source: RefundSource  # correction: B1, refunded in full automatically
    status: RefundStatus
    gateway_refund_id: str | None
    credit_note_id: str | None  # I2: null until the refund succeeded
    created_at: _dt.datetime


class RefundList(ListOf[Refund]):
    pass


to_api = serialiser(Refund, refunds)
