"""I1-I3: issuing invoices and credit notes, in the caller's transaction, and serving their PDFs.

The settlement of a payment and of a refund call these inside the unit of work that records the success (I1: the
same transaction), with its connection and business time:

    await issue_invoices(uow.conn, [payment ids written succeeded], uow.now, seller_from_env(), uow.ctx.policies)
    await issue_credit_note(uow.conn, refund_id, uow.now, seller_from_env())

Numbers are taken from the counter row of the series and year (`repository.take_numbers`), locked until that
transaction ends: the lock is the price of a gapless sequence, so issuing is kept short (one statement to read the
batch's facts, one to take all its numbers, one to insert all its documents).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import Principal
from app.context import AppContext
from app.ids import new_id
from app.invoices import pdf, repository
from app.invoices.repository import ChargeFacts
from app.invoices.schemas import credit_note_to_api, invoice_to_api
from app.invoices.seller import Seller, seller_from_env
from app.models import credit_notes, invoices
from policies import (
    CREDIT_NOTE_SERIES,
    INVOICE_SERIES,
    PolicyBook,
    credit_note_split,
    document_number,
    document_year,
    invoice_figures,
    tax_rate_bps,
)


def _rate_bps(charge: ChargeFacts, policies: PolicyBook, now: _dt.datetime) -> int:
    """P2: the rate the payment's tax was computed at: its policy version's rate for the buyer's country."""
    try:
        document = policies.by_version(charge.policy_version)
    except KeyError:
        document = policies.at(now)
    return tax_rate_bps(document.tax_rates.get(charge.buyer_country or ""))


def _buyer(charge: ChargeFacts) -> dict:
    """I1: the buyer as billed: name, country, billing address and tax id; never the email."""
    return {
        "name": charge.buyer_name,
        "country": charge.buyer_country,
        "address": charge.buyer_address,
        "tax_id": charge.buyer_tax_id,
    }


def _invoice_row(
    charge: ChargeFacts, number: str, now: _dt.datetime, seller: Seller, policies: PolicyBook, render: bool
) -> dict:
    rate = _rate_bps(charge, policies, now)
    figures = invoice_figures(
        charge.price_amount,
        charge.tax_amount,
        charge.credit_applied,
        charge.amount,
        rate,
        address_known=charge.buyer_address is not None,
        # P2: a zero tax where the country has a rate is the reverse charge of a business customer (tax id).
        reverse_charge=bool(charge.buyer_tax_id) and charge.tax_amount == 0 and rate > 0 and charge.price_amount > 0,
        exemption_note=seller.exemption_note,
    )
    row = {
        "id": new_id("inv"),
        "number": number,
        "kind": figures.kind,
        "customer_id": charge.customer_id,
        "subscription_id": charge.subscription_id,
        "payment_id": charge.payment_id,
        "issued_at": now,
        "currency": charge.currency,
        "seller": seller.as_document(),
        "buyer": _buyer(charge),
        "lines": [
            {
                "description": f"{charge.plan_name} ({charge.interval}ly subscription)",
                "plan": charge.plan_code,
                "period_start": charge.period_start,
                "period_end": charge.period_end,
                "unit_amount": figures.subtotal,
                "quantity": 1,
                "amount": figures.subtotal,
            }
        ],
        "subtotal": figures.subtotal,
        "tax_rate_bps": figures.tax_rate_bps,
        "tax_amount": figures.tax_amount,
        "tax_note": figures.tax_note,
        "credit_applied": figures.credit_applied,
        "total": figures.total,
        "policy_version": charge.policy_version,
        "pdf": None,
    }
    if render:
        row["pdf"] = pdf.render_invoice(invoice_to_api(row))
    return row


async def issue_invoices(
    conn: AsyncConnection,
    payment_ids: Sequence[str],
    now: _dt.datetime,
    seller: Seller,
    policies: PolicyBook,
    *,
    render_pdf: bool = True,
) -> list[dict]:
    """I1: one invoice for each succeeded payment of `payment_ids` that has none yet (a payment invoiced already is
    skipped: exactly one invoice per payment), issued at `now` in the caller's transaction, numbered for the whole
    batch by one counter update. Returns the invoices issued, as the API shows them.

    `render_pdf=False` leaves the PDF to be rendered at its first download (`pdf_of`), from the same stored
    document and with the same bytes: for the renewal batch, where rendering inside the transaction would hold the
    counter's lock (every other issuer waits on it) for about 9 ms per invoice (bench/pdf.py), some 17 times what
    a renewal costs today."""
    charges = await repository.uninvoiced_charges(conn, payment_ids)
    if not charges:
        return []
    year = document_year(now, seller.timezone)
    first = await repository.take_numbers(conn, INVOICE_SERIES, year, len(charges))
    rows = [
        _invoice_row(charge, document_number(INVOICE_SERIES, year, first + offset), now, seller, policies, render_pdf)
        for offset, charge in enumerate(charges)
    ]
    await repository.insert_invoices(conn, rows)
    return [invoice_to_api(row) for row in rows]


async def issue_credit_note(
    conn: AsyncConnection, refund_id: str, now: _dt.datetime, seller: Seller, *, render_pdf: bool = True
) -> dict | None:
    """I2: the credit note of a succeeded refund, issued at `now` in the caller's transaction (the one recording
    the refund's success): the refunded amount split into price and tax in its invoice's proportion, on the
    cumulative amount refunded. Returns it as the API shows it; the one issued already for this refund if there
    is one; None when the refund has not succeeded or its payment has no invoice (paid before invoices existed)."""
    facts = await repository.refund_facts(conn, refund_id)
    if facts is None or facts.invoice is None:
        return None
    if facts.credit_note_id is not None:
        existing = await repository.get_by_id(conn, credit_notes, facts.credit_note_id)
        return credit_note_to_api(existing)
    invoice = facts.invoice
    before = await repository.credited(conn, invoice.id)
    split = credit_note_split(invoice.subtotal, invoice.tax_amount, invoice.total, before, facts.amount)
    year = document_year(now, seller.timezone)
    number = document_number(CREDIT_NOTE_SERIES, year, await repository.take_numbers(conn, CREDIT_NOTE_SERIES, year, 1))
    row = {
        "id": new_id("cn"),
        "number": number,
        "invoice_id": invoice.id,
        "invoice_number": invoice.number,
        "invoice_issued_at": invoice.issued_at,
        "refund_id": refund_id,
        "customer_id": invoice.customer_id,
        "issued_at": now,
        "currency": invoice.currency,
        "seller": seller.as_document(),
        "buyer": invoice.buyer,
        "tax_rate_bps": invoice.tax_rate_bps,
        "amount": split.amount,
        "price_amount": split.price_amount,
        "tax_amount": split.tax_amount,
        "pdf": None,
    }
    if render_pdf:
        row["pdf"] = pdf.render_credit_note(credit_note_to_api(row))
    await repository.insert_credit_note(conn, row)
    return credit_note_to_api(row)


async def invoice_payments(
    conn: AsyncConnection,
    payment_ids: Sequence[str],
    now: _dt.datetime,
    policies: PolicyBook,
    *,
    render_pdf: bool = True,
) -> dict[str, dict]:
    """I1: `issue_invoices` for the seller of the settings, each payment then naming its invoice (`invoice_id`), in
    the caller's transaction (the one recording the successes). Returns the invoices issued, by payment id."""
    issued = await issue_invoices(conn, payment_ids, now, seller_from_env(), policies, render_pdf=render_pdf)
    await repository.link_invoices(conn, [(invoice["payment_id"], invoice["id"]) for invoice in issued])
    return {invoice["payment_id"]: invoice for invoice in issued}


async def credit_refund(conn: AsyncConnection, refund_id: str, now: _dt.datetime) -> dict | None:
    """I2: `issue_credit_note` for the seller of the settings (its PDF rendered at once), the refund then naming it
    (`credit_note_id`), in the caller's transaction (the one recording the refund's success)."""
    note = await issue_credit_note(conn, refund_id, now, seller_from_env())
    if note is not None:
        await repository.link_credit_note(conn, refund_id, note["id"])
    return note


def render(table_name: str, document: dict) -> bytes:
    """I1/I2: the PDF of a document as the API shows it."""
    return pdf.render_invoice(document) if table_name == invoices.name else pdf.render_credit_note(document)


async def pdf_of(ctx: AppContext, principal: Principal, table: Table, document_id: str, noun: str) -> tuple[str, bytes]:
    """I1/I2: a document's (number, PDF) for a caller who may see it (else NotFound): the stored PDF, or, for one
    issued without it (a renewal batch's, not rendered yet), rendered now, once, and stored for good."""
    async with ctx.db.read() as conn:
        row = await repository.get_visible(conn, principal, table, document_id, noun)
    body = row.pdf
    if body is None:
        to_api = invoice_to_api if table.name == invoices.name else credit_note_to_api
        rendered = render(table.name, to_api(row))
        async with ctx.db.transaction() as conn:
            body = await repository.store_pdf(conn, table, row.id, rendered)
    return row.number, body


async def receipt_attachments(ctx: AppContext, payment_ids: Sequence[str]) -> dict[str, tuple[str, bytes]]:
    """I1: the invoice PDFs to attach to these payments' mailed receipts, by payment id, as (file name, bytes): the
    stored PDF, or, for one the renewal batch issued without it and not rendered yet, rendered and stored now."""
    async with ctx.db.read() as conn:
        rows = await repository.invoices_of_payments(conn, payment_ids)
    attached = {}
    for row in rows:
        body = row.pdf
        if body is None:
            rendered = render(invoices.name, invoice_to_api(row))
            async with ctx.db.transaction() as conn:
                body = await repository.store_pdf(conn, invoices, row.id, rendered)
        attached[row.payment_id] = (f"{row.number}.pdf", body)
    return attached


async def render_pending_pdfs(ctx: AppContext, now: _dt.datetime) -> int:
    """I1: the scheduled job that renders, shortly after, the PDFs of the documents the renewal batch issued
    without one (`issue_invoices(render_pdf=False)`): one claimed batch per call, stored once each. The PDF is a
    function of the stored document alone (its creation date the issue time), so it has the same bytes as the one a
    first download renders (`GET .../pdf` renders and stores it if this job has not yet). Returns how many."""
    done = 0
    for table, to_api in ((invoices, invoice_to_api), (credit_notes, credit_note_to_api)):
        async with ctx.db.transaction() as conn:
            rows = await repository.claim_unrendered(conn, table, ctx.settings.job_batch_size)
            await repository.store_pdfs(conn, table, [(row.id, render(table.name, to_api(row))) for row in rows])
        done += len(rows)
    return done
