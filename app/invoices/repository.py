"""Every statement about invoices, credit notes and their counters (I1-I3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Table, and_, bindparam, func, insert, null, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import Principal
from app.claims import claim_batch
from app.customers.repository import get_owned
from app.db import insert_ignoring_conflict
from app.models import credit_notes, customers, document_counters, invoices, payments, plans, refunds, subscriptions
from policies.states import PaymentStatus, RefundStatus

# I1/I2: raise a series' counter for the year by `count` and read the new last number, in one statement. The row
# stays locked (the UPDATE's row lock) until the issuing transaction ends: the numbers it took are its own, and a
# rollback gives them back, so the sequence has no gap and no duplicate whatever the concurrency.
_TAKE_NUMBERS = (
    update(document_counters)
    .where(document_counters.c.series == bindparam("b_series"), document_counters.c.year == bindparam("b_year"))
    .values(last_number=document_counters.c.last_number + bindparam("b_count"))
    .returning(document_counters.c.last_number)
)


async def take_numbers(conn: AsyncConnection, series: str, year: int, count: int) -> int:
    """I1/I2: `count` consecutive numbers of `series` for `year`, taken in this transaction; returns the first."""
    params = {"b_series": series, "b_year": year, "b_count": count}
    last = (await conn.execute(_TAKE_NUMBERS, params)).scalar()
    if last is None:  # the year's first document: make its counter (a racing first finds it made), then take
        await insert_ignoring_conflict(
            conn, document_counters, {"series": series, "year": year, "last_number": 0}, conflict_on=["series", "year"]
        )
        last = (await conn.execute(_TAKE_NUMBERS, params)).scalar_one()
    return int(last) - count + 1


@dataclass(frozen=True, slots=True)
class ChargeFacts:
    """I1: what an invoice is made from: a succeeded payment, its plan and its customer as billed now."""

    payment_id: str
    customer_id: str
    subscription_id: str
    period_start: Any
    period_end: Any
    price_amount: int
    tax_amount: int
    credit_applied: int
    amount: int
    currency: str
    policy_version: str
    plan_code: str
    plan_name: str
    interval: str
    buyer_name: str | None
    buyer_country: str | None
    buyer_address: dict | None
    buyer_tax_id: str | None


# Issue 17 item 1 adds the billing address and tax id to customers; until then the buyer has neither.
_ADDRESS = customers.c.get("address")
_TAX_ID = customers.c.get("tax_id")


def _facts_statement() -> Select:
    return (
        select(
            payments.c.id.label("payment_id"),
            payments.c.customer_id,
            payments.c.subscription_id,
            payments.c.period_start,
            payments.c.period_end,
            payments.c.price_amount,
            payments.c.tax_amount,
            payments.c.credit_applied,
            payments.c.amount,
            payments.c.currency,
            payments.c.policy_version,
            plans.c.code.label("plan_code"),
            plans.c.name.label("plan_name"),
            subscriptions.c.interval,
            customers.c.name.label("buyer_name"),
            customers.c.country.label("buyer_country"),
            (_ADDRESS if _ADDRESS is not None else null()).label("buyer_address"),
            (_TAX_ID if _TAX_ID is not None else null()).label("buyer_tax_id"),
        )
        .join(subscriptions, subscriptions.c.id == payments.c.subscription_id)
        .join(plans, plans.c.id == subscriptions.c.plan_id)
        .join(customers, customers.c.id == payments.c.customer_id)
        .outerjoin(invoices, invoices.c.payment_id == payments.c.id)
        .where(
            payments.c.id.in_(bindparam("ids", expanding=True)),
            payments.c.status == PaymentStatus.SUCCEEDED,
            invoices.c.id.is_(None),
        )
        .order_by(payments.c.id)
    )


_FACTS = _facts_statement()


async def uninvoiced_charges(conn: AsyncConnection, payment_ids: Sequence[str]) -> list[ChargeFacts]:
    """I1: the succeeded payments among `payment_ids` that have no invoice yet, in id order, in one statement."""
    if not payment_ids:
        return []
    rows = (await conn.execute(_FACTS, {"ids": sorted(set(payment_ids))})).all()
    return [ChargeFacts(**row._mapping) for row in rows]


async def insert_invoices(conn: AsyncConnection, rows: list[dict]) -> None:
    """I1: every invoice of a batch, in one statement (executemany)."""
    if rows:
        await conn.execute(insert(invoices), rows)


_LINK_INVOICE = (
    update(payments).where(payments.c.id == bindparam("b_payment")).values(invoice_id=bindparam("b_invoice"))
)


async def link_invoices(conn: AsyncConnection, links: Sequence[tuple[str, str]]) -> None:
    """I1: each (payment id, invoice id): the payment names its invoice, in one statement (executemany)."""
    if links:
        await conn.execute(_LINK_INVOICE, [{"b_payment": p, "b_invoice": i} for p, i in links])


async def link_credit_note(conn: AsyncConnection, refund_id: str, credit_note_id: str) -> None:
    """I2: the refund names its credit note."""
    await conn.execute(update(refunds).where(refunds.c.id == refund_id).values(credit_note_id=credit_note_id))


async def insert_credit_note(conn: AsyncConnection, row: dict) -> None:
    await conn.execute(insert(credit_notes), row)


@dataclass(frozen=True, slots=True)
class RefundFacts:
    """I2: a succeeded refund and the invoice of the payment it gives money back from (locked)."""

    refund_id: str
    amount: int
    credit_note_id: str | None
    invoice: Any  # the invoice row, or None for a payment issued before invoices existed


async def refund_facts(conn: AsyncConnection, refund_id: str) -> RefundFacts | None:
    """I2: the refund, if it succeeded, with its payment's invoice locked (FOR UPDATE: one credit note of an invoice
    at a time, so each one's cumulative split sees the ones before it)."""
    refund = (
        await conn.execute(
            select(refunds.c.id, refunds.c.amount, refunds.c.payment_id, credit_notes.c.id.label("credit_note_id"))
            .outerjoin(credit_notes, credit_notes.c.refund_id == refunds.c.id)
            .where(refunds.c.id == refund_id, refunds.c.status == RefundStatus.SUCCEEDED)
        )
    ).first()
    if refund is None:
        return None
    invoice = (
        await conn.execute(select(invoices).where(invoices.c.payment_id == refund.payment_id).with_for_update())
    ).first()
    return RefundFacts(refund.id, refund.amount, refund.credit_note_id, invoice)


async def credited(conn: AsyncConnection, invoice_id: str) -> int:
    """I2: the amount the invoice's credit notes credited so far."""
    total = (
        await conn.execute(select(func.sum(credit_notes.c.amount)).where(credit_notes.c.invoice_id == invoice_id))
    ).scalar()
    return int(total or 0)


async def get_visible(conn: AsyncConnection, principal: Principal, table: Table, document_id: str, noun: str):  # noqa: ANN201
    """An invoice or credit note the caller may see (a customer its own while not erased; ops any), else 404."""
    return await get_owned(conn, principal, table, document_id, noun)


async def store_pdf(conn: AsyncConnection, table: Table, document_id: str, pdf: bytes) -> bytes:
    """I1/I3: store a document's PDF if it has none yet (the one write an issued document takes), and return the
    stored one: a concurrent first download that stored it already wins, and both serve the same bytes."""
    await conn.execute(update(table).where(and_(table.c.id == document_id, table.c.pdf.is_(None))).values(pdf=pdf))
    return (await conn.execute(select(table.c.pdf).where(table.c.id == document_id))).scalar_one()


async def claim_unrendered(conn: AsyncConnection, table: Table, limit: int) -> Sequence[Any]:
    """I1: a batch of documents issued without their PDF (the renewal batch's), oldest first, taken by this
    transaction (SKIP LOCKED on PostgreSQL: two replicas render different documents)."""
    stmt = select(table).where(table.c.pdf.is_(None)).order_by(table.c.issued_at, table.c.id)
    return await claim_batch(conn, stmt, of=table, limit=limit, postgres=conn.dialect.name == "postgresql")


_STORE_PDF = {
    table.name: update(table)
    .where(table.c.id == bindparam("b_id"), table.c.pdf.is_(None))
    .values(pdf=bindparam("b_pdf"))
    for table in (invoices, credit_notes)
}


async def store_pdfs(conn: AsyncConnection, table: Table, rendered: Sequence[tuple[str, bytes]]) -> None:
    """I1/I3: each (document id, PDF) stored into an empty `pdf`, in one statement (executemany)."""
    if rendered:
        await conn.execute(_STORE_PDF[table.name], [{"b_id": i, "b_pdf": pdf} for i, pdf in rendered])


async def all_of_customer(conn: AsyncConnection, table: Table, customer_id: str) -> Sequence[Any]:
    """D1/I3: every invoice or credit note of the customer, oldest first (the export)."""
    stmt = customer_documents(table, customer_id).order_by(table.c.issued_at, table.c.id)
    return (await conn.execute(stmt)).all()


async def invoices_of_payments(conn: AsyncConnection, payment_ids: Sequence[str]) -> Sequence[Any]:
    """I1: the invoices of these payments (a batch of receipts being mailed)."""
    if not payment_ids:
        return []
    return (await conn.execute(select(invoices).where(invoices.c.payment_id.in_(sorted(set(payment_ids)))))).all()


def customer_documents(table: Table, customer_id: str) -> Select:
    """The statement listing a customer's invoices or credit notes (paged by the caller)."""
    return select(table).where(table.c.customer_id == customer_id)


async def get_by_id(conn: AsyncConnection, table: Table, document_id: str):  # noqa: ANN201
    return (await conn.execute(select(table).where(table.c.id == document_id))).one()
