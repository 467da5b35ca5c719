from __future__ import annotations

import datetime as _dt
from typing import Annotated, Literal

from pydantic import Field

from app.models import customers
from app.schemas import Country, Email, Name, Reason, RequestModel, SingleLine, serialiser
from policies.states import CustomerStatus


class CustomerCreate(RequestModel):
    email: Email
    name: Name
    country: Country
    marketing_opt_out: bool = False
    # Ops only: with a customer token the external id is the token's `sub`.
    external_id: Annotated[str, Field(min_length=1, max_length=255), SingleLine] | None = None


class CustomerUpdate(RequestModel):
    """D2/D4: correction of billing details and the marketing choice."""

    # Omitted fields stay as they are; an explicit null is refused (these fields are required on a customer).
    email: Email = None  # type: ignore[assignment]
    name: Name = None  # type: ignore[assignment]
    country: Country = None  # type: ignore[assignment]
    marketing_opt_out: bool = None  # type: ignore[assignment]


class Customer(RequestModel):
    object: Literal["customer"] = "customer"
    id: str
    external_id: str | None
    email: str | None
    name: str | None
    country: str | None
    marketing_opt_out: bool
    status: CustomerStatus
    created_at: _dt.datetime


to_api = serialiser(Customer, customers)


class StandingChange(RequestModel):
    """R3: suspension, lifting it, termination: always with a reason."""

    reason: Reason
