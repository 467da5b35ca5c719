from __future__ import annotations

import datetime as _dt
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from app.schemas import Amount, Currency, Money, RequestModel, SingleLine

PlanCode = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")


class PlanCreate(RequestModel):
    code: str = PlanCode
    # The name goes into notices' subjects (receipts, reminders): one line, without control characters.
    name: Annotated[str, Field(min_length=1, max_length=200), SingleLine]
    tier: Literal["subscription", "enterprise"]
    interval: Literal["month", "year"]
    amount: Amount
    currency: Currency
    trial_available: bool = False


class PlanUpdate(RequestModel):
    """B3: a list price change affects new purchases only."""

    amount: Amount = None  # type: ignore[assignment]
    active: bool = None  # type: ignore[assignment]


class Plan(BaseModel):
    object: Literal["plan"] = "plan"
    id: str
    code: str
    name: str
    tier: Literal["subscription", "enterprise"]
    interval: Literal["month", "year"]
    price: Money
    trial_available: bool
    active: bool
    created_at: _dt.datetime


class PlanList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Plan]
    has_more: bool


def to_api(row) -> dict:  # noqa: ANN001
    return {
        "object": "plan",
        "id": row.id,
        "code": row.code,
        "name": row.name,
        "tier": row.tier,
        "interval": row.interval,
        "price": {"amount": row.amount, "currency": row.currency},
        "trial_available": row.trial_available,
        "active": row.active,
        "created_at": row.created_at,
    }
