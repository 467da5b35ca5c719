from __future__ import annotations

import datetime as _dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from app.models import customers
from app.schemas import Country, Email, Name, Reason, RequestModel, SingleLine, serialiser
from policies.details import check_tax_id
from policies.states import CustomerStatus


# P1/I1: each line of a billing address: one line of text, trimmed, not empty.
def _line(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


AddressLine = Annotated[str, Field(min_length=1, max_length=200), SingleLine, AfterValidator(_line)]
ShortLine = Annotated[str, Field(min_length=1, max_length=40), SingleLine, AfterValidator(_line)]
TaxId = Annotated[str, Field(min_length=4, max_length=32), AfterValidator(check_tax_id)]


class BillingAddress(RequestModel):
    """P1/I1: the billing address printed on the customer's invoices (which are full invoices once it is known)."""

    line1: AddressLine
    line2: AddressLine | None = None
    city: AddressLine
    postal_code: ShortLine | None = None
    region: AddressLine | None = None


class BillingAddressShown(BaseModel):
    """The billing address as a Customer shows it (`line1` and `city` always set: `BillingAddress` requires them)."""

    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    region: str | None = None


class CustomerCreate(RequestModel):
    email: Email
    name: Name
    country: Country
    marketing_opt_out: bool = False
    address: BillingAddress | None = None  # I1: optional; required before a purchase once a tax_id is given
    tax_id: TaxId | None = None
    # Ops only: with a customer token the external id is the token's `sub`.
    external_id: Annotated[str, Field(min_length=1, max_length=255), SingleLine] | None = None


class CustomerUpdate(RequestModel):
    """D2/D4: correction of billing details and the marketing choice."""

    # Omitted fields stay as they are; an explicit null is refused (these fields are required on a customer).
    email: Email = None  # type: ignore[assignment]
    name: Name = None  # type: ignore[assignment]
    country: Country = None  # type: ignore[assignment]
    marketing_opt_out: bool = None  # type: ignore[assignment]
    # D2: these two are optional on a customer: null removes them.
    address: BillingAddress | None = None
    tax_id: TaxId | None = None


class Customer(RequestModel):
    object: Literal["customer"] = "customer"
    id: str
    external_id: str | None
    email: str | None
    name: str | None
    country: str | None
    address: BillingAddressShown | None
    tax_id: str | None
    marketing_opt_out: bool
    status: CustomerStatus
    created_at: _dt.datetime


to_api = serialiser(Customer, customers)


class StandingChange(RequestModel):
    """R3: suspension, lifting it, termination: always with a reason."""

    reason: Reason
