"""I1/I2: the Invoice and Credit note resources (api.md "Invoices and credit notes"), and a row as the API shows it."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Literal

from pydantic import BaseModel


class Seller(BaseModel):
    name: str
    address: str | None
    tax_id: str | None


class Buyer(BaseModel):
    name: str | None
    country: str | None
    address: dict[str, Any] | None
    tax_id: str | None


class InvoiceLine(BaseModel):
    description: str
    plan: str
    period_start: _dt.datetime | None
    period_end: _dt.datetime | None
    unit_amount: int
    quantity: int
    amount: int


class Invoice(BaseModel):
    object: Literal["invoice"] = "invoice"
    id: str
    number: str
    kind: Literal["full", "simplified"]
    customer_id: str
    subscription_id: str
    payment_id: str
    issued_at: _dt.datetime
    currency: str
    seller: Seller
    buyer: Buyer
    lines: list[InvoiceLine]
    subtotal: int
    tax_rate_bps: int
    tax_amount: int
    tax_note: str | None
    credit_applied: int
    total: int


class InvoiceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Invoice]
    has_more: bool


class CreditNote(BaseModel):
    object: Literal["credit_note"] = "credit_note"
    id: str
    number: str
    invoice_id: str
    invoice_number: str
    invoice_issued_at: _dt.datetime
    refund_id: str
    customer_id: str
    issued_at: _dt.datetime
    currency: str
    seller: Seller
    buyer: Buyer
    tax_rate_bps: int
    amount: int
    price_amount: int
    tax_amount: int


class CreditNoteList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CreditNote]
    has_more: bool


INVOICE_FIELDS = tuple(name for name in Invoice.model_fields if name != "object")
CREDIT_NOTE_FIELDS = tuple(name for name in CreditNote.model_fields if name != "object")


def invoice_to_api(row: Any) -> dict:
    """An invoice row (or the dict it was inserted from) as `GET /v1/invoices/{id}` answers it."""
    values = row if isinstance(row, dict) else row._mapping
    return {"object": "invoice", **{name: values[name] for name in INVOICE_FIELDS}}


def credit_note_to_api(row: Any) -> dict:
    """A credit-note row (or its dict) as `GET /v1/credit-notes/{id}` answers it."""
    values = row if isinstance(row, dict) else row._mapping
    return {"object": "credit_note", **{name: values[name] for name in CREDIT_NOTE_FIELDS}}
