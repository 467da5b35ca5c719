from __future__ import annotations

import datetime as _dt
from typing import Literal

from pydantic import BaseModel

from app.models import payments
from app.schemas import ListOf, serialiser
from policies.states import GatewayName, PaymentPurpose, PaymentStatus


class Payment(BaseModel):
    object: Literal["payment"] = "payment"
    id: str
    customer_id: str
    subscription_id: str
    purpose: PaymentPurpose
    amount: int
    price_amount: int
    tax_amount: int
    credit_applied: int
    currency: str
    status: PaymentStatus
    failure_code: str | None
    refunded_amount: int
    period_start: _dt.datetime | None
    period_end: _dt.datetime | None
    gateway: GatewayName
    gateway_payment_id: str | None
    policy_version: str
    invoice_id: str | None  # I1: null until the payment succeeded
    created_at: _dt.datetime


class PaymentList(ListOf[Payment]):
    pass


to_api = serialiser(Payment, payments)
