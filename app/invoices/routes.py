"""I1-I3: `GET /v1/invoices/{id}`, `/pdf`, `/v1/customers/{id}/invoices`, and the same for credit notes.

A customer token reads its own documents (404 otherwise, and after erasure nothing: the erased customer has no
`external_id` any more); an ops token reads any (I3: after erasure, ops only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import Table
from starlette.responses import Response

from app.auth import Caller
from app.context import AppContext, Ctx
from app.customers.lists import customer_list
from app.http import JSON
from app.invoices import repository, service
from app.invoices.schemas import CreditNote, CreditNoteList, Invoice, InvoiceList, credit_note_to_api, invoice_to_api
from app.models import credit_notes, invoices
from app.pagination import Page

router = APIRouter(tags=["invoices"])

_PDF_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/pdf": {}}, "description": "The document as issued, as PDF."}
}


async def _pdf(ctx: AppContext, caller, table: Table, document_id: str, noun: str, to_api) -> Response:  # noqa: ANN001
    number, body = await service.pdf_of(ctx, caller, table, document_id, noun)
    return pdf_response(number, body)


def pdf_response(number: str, body: bytes) -> Response:
    """A document's PDF, shown inline under its number."""
    return Response(
        content=body,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{number}.pdf"'},
    )


@router.get("/v1/invoices/{invoice_id}", response_model=Invoice)
async def get_invoice(invoice_id: str, ctx: Ctx, caller: Caller) -> Response:
    async with ctx.db.read() as conn:
        row = await repository.get_visible(conn, caller, invoices, invoice_id, "invoice")
    return JSON(invoice_to_api(row))


@router.get("/v1/invoices/{invoice_id}/pdf", response_class=Response, responses=_PDF_RESPONSE)
async def get_invoice_pdf(invoice_id: str, ctx: Ctx, caller: Caller) -> Response:
    return await _pdf(ctx, caller, invoices, invoice_id, "invoice", invoice_to_api)


@router.get("/v1/customers/{customer_id}/invoices", response_model=InvoiceList)
async def list_invoices(customer_id: str, ctx: Ctx, caller: Caller, params: Page) -> Response:
    stmt = repository.customer_documents(invoices, customer_id)
    return JSON(await customer_list(ctx, caller, customer_id, stmt, invoices.c.id, params, invoice_to_api))


@router.get("/v1/credit-notes/{credit_note_id}", response_model=CreditNote)
async def get_credit_note(credit_note_id: str, ctx: Ctx, caller: Caller) -> Response:
    async with ctx.db.read() as conn:
        row = await repository.get_visible(conn, caller, credit_notes, credit_note_id, "credit note")
    return JSON(credit_note_to_api(row))


@router.get("/v1/credit-notes/{credit_note_id}/pdf", response_class=Response, responses=_PDF_RESPONSE)
async def get_credit_note_pdf(credit_note_id: str, ctx: Ctx, caller: Caller) -> Response:
    return await _pdf(ctx, caller, credit_notes, credit_note_id, "credit note", credit_note_to_api)


@router.get("/v1/customers/{customer_id}/credit-notes", response_model=CreditNoteList)
async def list_credit_notes(customer_id: str, ctx: Ctx, caller: Caller, params: Page) -> Response:
    stmt = repository.customer_documents(credit_notes, customer_id)
    return JSON(await customer_list(ctx, caller, customer_id, stmt, credit_notes.c.id, params, credit_note_to_api))
