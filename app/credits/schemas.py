from __future__ import annotations

import datetime as _dt
from typing import Literal

from pydantic import BaseModel

from app.models import credit_entries
from app.schemas import Currency, ListOf, PositiveAmount, Reason, RequestModel, serialiser
from policies.states import CreditKind


class CreditCreate(RequestModel):
    amount: PositiveAmount
    currency: Currency
    reason: Reason


class Credit(BaseModel):
    object: Literal["credit"] = "credit"
    id: str
    customer_id: str
    kind: CreditKind
    amount: int
    currency: str
    reason: str | None
    created_by: str
    payment_id: str | None
    created_at: _dt.datetime


class CreditList(ListOf[Credit]):
    """A page of a customer's credit entries, with the balance per currency."""

    balances: dict[str, int]


to_api = serialiser(Credit, credit_entries)
