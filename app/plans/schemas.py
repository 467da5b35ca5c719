from __future__ import annotations

import datetime as _dt
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from app.models import plans
from app.schemas import Amount, Currency, From, ListOf, Money, RequestModel, SingleLine, serialiser
from policies.states import Interval, Tier

PlanCode = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")


class PlanCreate(RequestModel):
    code: str = PlanCode
    # The name goes into notices' subjects (receipts, reminders): one line, without control characters.
    name: Annotated[str, Field(min_length=1, max_length=200), SingleLine]
    tier: Tier
    interval: Interval
    amount: Amount
    currency: Currency
    trial_available: bool = False


class PlanUpdate(RequestModel):
    """B3: a list price change affects new purchases only."""

    # Omitted fields stay as they are (None: not given; an explicit null is refused), hence the ignores.
    amount: Amount = None  # type: ignore[assignment]  # None: omitted
    active: bool = None  # type: ignore[assignment]  # None: omitted


class Plan(BaseModel):
    object: Literal["plan"] = "plan"
    id: str
    code: str
    name: str
    tier: Tier
    interval: Interval
    price: Annotated[Money, From(amount="amount", currency="currency")]
    trial_available: bool
    active: bool
    created_at: _dt.datetime


class PlanList(ListOf[Plan]):
    pass


to_api = serialiser(Plan, plans)
