"""Every statement about payments (and what a payment writes beside itself: the credit it spends, the gateway's
customer it is charged to).

Rows come back as SQLAlchemy `Row`s typed by the protocols below: attribute access is checked by mypy and costs
nothing at run time (no object is built per row; the renewal batch reads thousands). The statements the money
path runs on every charge are built once, at import: executing the same statement object skips building the
construct and computing its cache key on every call (SQLAlchemy memoizes the key on the object).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any, Protocol, cast

from sqlalchemy import ColumnElement, Select, and_, bindparam, case, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import Principal
from app.claims import claim_batch
from app.customers.repository import get_owned
from app.db import insert_ignoring_conflict, insert_ignoring_returning
from app.models import credit_entries, customers, payments
from policies.states import PaymentPurpose, PaymentStatus


class PaymentRow(Protocol):
    """A row of `payments`, every column (app/models/billing.py)."""

    id: str
    customer_id: str
    subscription_id: str
    purpose: str
    period_index: int
    period_start: _dt.datetime | None
    period_end: _dt.datetime | None
    price_amount: int
    tax_amount: int
    credit_applied: int
    amount: int
    currency: str
    status: str
    failure_code: str | None
    refunded_amount: int
    payment_method: str
    gateway: str
    gateway_payment_id: str | None
    client_secret: str | None
    idempotency_key: str
    policy_version: str
    created_at: _dt.datetime
    updated_at: _dt.datetime
    gateway_cancel_due_at: _dt.datetime | None
    gateway_cancel_refusals: int
    invoice_id: str | None


class CancellationRow(Protocol):
    """A payment whose PaymentIntent is due to be cancelled at the gateway (B1)."""

    id: str
    gateway_payment_id: str


class RefusalRow(Protocol):
    """A refused cancellation, counted (B1)."""

    gateway_cancel_refusals: int
    customer_id: str
    gateway_payment_id: str | None


# Reads ---------------------------------------------------------------------------------------------------------

LIST_ORDER = payments.c.id  # the column a customer's payment list pages by


async def get_visible(conn: AsyncConnection, principal: Principal, payment_id: str) -> PaymentRow:
    return cast(PaymentRow, await get_owned(conn, principal, payments, payment_id, "payment"))


async def by_gateway_id(
    conn: AsyncConnection, gateway_payment_id: str, *, for_update: bool = False
) -> PaymentRow | None:
    stmt = select(payments).where(payments.c.gateway_payment_id == gateway_payment_id)
    return cast("PaymentRow | None", (await conn.execute(stmt.with_for_update() if for_update else stmt)).first())


def for_customer(customer_id: str) -> Select[Any]:
    """A customer's payments, for `app.customers.lists.customer_list` (paged by `LIST_ORDER`)."""
    return select(payments).where(payments.c.customer_id == customer_id)


_GET = select(payments).where(payments.c.id == bindparam("payment_id"))


async def get(conn: AsyncConnection, payment_id: str) -> PaymentRow:
    return cast(PaymentRow, (await conn.execute(_GET, {"payment_id": payment_id})).one())


async def unanswered_purchase(conn: AsyncConnection, subscription_id: str) -> PaymentRow | None:
    """The pending first payment of a subscription that the gateway never answered (no PaymentIntent recorded)."""
    stmt = select(payments).where(
        payments.c.subscription_id == subscription_id,
        payments.c.purpose == PaymentPurpose.PURCHASE,
        payments.c.status == PaymentStatus.PENDING,
        payments.c.gateway_payment_id.is_(None),
    )
    return cast("PaymentRow | None", (await conn.execute(stmt)).first())


async def unanswered(conn: AsyncConnection, payment_id: str) -> PaymentRow | None:
    """The payment, if still pending and never answered by the gateway (no PaymentIntent recorded)."""
    stmt = select(payments).where(
        payments.c.id == payment_id,
        payments.c.status == PaymentStatus.PENDING,
        payments.c.gateway_payment_id.is_(None),
    )
    return cast("PaymentRow | None", (await conn.execute(stmt)).first())


async def pending_client_secret(conn: AsyncConnection, subscription_id: str) -> str | None:
    """The client secret of an incomplete purchase's payment that awaits the customer's action."""
    stmt = select(payments.c.client_secret).where(
        payments.c.subscription_id == subscription_id,
        payments.c.purpose == PaymentPurpose.PURCHASE,
        payments.c.status == PaymentStatus.PENDING,
    )
    return cast("str | None", (await conn.execute(stmt)).scalar())


# Locks (a settlement locks the subscription first: app/subscriptions/repository.py, then its payments) -----------

_LOCK = _GET.with_for_update()
# A batch's payments, in ascending id order (two batches, or a batch and a termination, meet in the same order).
_LOCK_MANY = (
    select(payments)
    .where(payments.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(payments.c.id)
    .with_for_update()
)


async def lock(conn: AsyncConnection, payment_id: str) -> PaymentRow:
    return cast(PaymentRow, (await conn.execute(_LOCK, {"payment_id": payment_id})).one())


async def lock_many(conn: AsyncConnection, payment_ids: list[str]) -> dict[str, PaymentRow]:
    rows = cast("Sequence[PaymentRow]", (await conn.execute(_LOCK_MANY, {"ids": sorted(payment_ids)})).all())
    return {p.id: p for p in rows}


# Writes --------------------------------------------------------------------------------------------------------


async def insert(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(payments.insert(), row)


async def insert_reusing_keys(conn: AsyncConnection, rows: list[dict[str, Any]]) -> dict[str, PaymentRow]:
    """The payments of `rows` by idempotency key: inserted, or, for a key that exists already (a payment left
    pending by a crash, to be charged again with that key), the payment stored under it. One insert returns the
    rows it made; only the keys that existed already are read back."""
    made = cast(
        "list[PaymentRow]", await insert_ignoring_returning(conn, payments, rows, conflict_on=["idempotency_key"])
    )
    keyed = {p.idempotency_key: p for p in made}
    existing = [r["idempotency_key"] for r in rows if r["idempotency_key"] not in keyed]
    if existing:
        found = (await conn.execute(select(payments).where(payments.c.idempotency_key.in_(existing)))).all()
        keyed.update((p.idempotency_key, p) for p in cast("Sequence[PaymentRow]", found))
    return keyed


async def await_customer(
    conn: AsyncConnection, payment_id: str, gateway_payment_id: str, client_secret: str | None, now: _dt.datetime
) -> None:
    """B1: a purchase whose charge waits for the customer's action keeps its PaymentIntent and client secret."""
    await conn.execute(
        update(payments)
        .where(payments.c.id == payment_id)
        .values(gateway_payment_id=gateway_payment_id, client_secret=client_secret, updated_at=now)
    )


_SUCCEEDED = (
    update(payments)
    .where(payments.c.id == bindparam("b_id"))
    .values(
        status=PaymentStatus.SUCCEEDED,
        gateway_payment_id=bindparam("b_gateway_id"),
        period_start=bindparam("b_start"),
        period_end=bindparam("b_end"),
        client_secret=None,
        updated_at=bindparam("b_now"),
    )
)
_SUCCEEDED_WITHOUT_EFFECT = (
    update(payments)
    .where(payments.c.id == bindparam("b_id"))
    .values(status=PaymentStatus.SUCCEEDED, gateway_payment_id=bindparam("b_gateway_id"), updated_at=bindparam("b_now"))
)
# A purchase paid (the webhook's common case): the payment, still pending, is written succeeded and locked by the
# one statement, which returns it; nothing matches (and nothing is written) when it is no longer a pending purchase.
_PURCHASE_PAID = (
    update(payments)
    .where(
        payments.c.id == bindparam("b_id"),
        payments.c.status == PaymentStatus.PENDING,
        payments.c.purpose == PaymentPurpose.PURCHASE,
    )
    .values(
        status=PaymentStatus.SUCCEEDED,
        gateway_payment_id=bindparam("b_gateway_id"),
        period_start=bindparam("b_start"),
        period_end=bindparam("b_end"),
        client_secret=None,
        updated_at=bindparam("b_now"),
    )
    .returning(*payments.c)
)


def succeeded_params(
    payment_id: str, gateway_payment_id: str, start: _dt.datetime, end: _dt.datetime, now: _dt.datetime
) -> dict[str, Any]:
    """The parameters of `mark_succeeded` for one payment (a batch passes a list of them)."""
    return {"b_id": payment_id, "b_gateway_id": gateway_payment_id, "b_start": start, "b_end": end, "b_now": now}


async def mark_succeeded(conn: AsyncConnection, params: dict[str, Any] | list[dict[str, Any]]) -> None:
    """Payments succeeded for the period they paid for (one statement, executed for every row of `params`)."""
    await conn.execute(_SUCCEEDED, params)


async def mark_succeeded_without_effect(
    conn: AsyncConnection, payment_id: str, gateway_payment_id: str, now: _dt.datetime
) -> None:
    """A payment succeeded that paid for nothing (B1/R2): recorded for the books, no period."""
    await conn.execute(
        _SUCCEEDED_WITHOUT_EFFECT, {"b_id": payment_id, "b_gateway_id": gateway_payment_id, "b_now": now}
    )


async def mark_purchase_paid(
    conn: AsyncConnection,
    payment_id: str,
    gateway_payment_id: str,
    start: _dt.datetime,
    end: _dt.datetime,
    now: _dt.datetime,
) -> PaymentRow | None:
    """The purchase payment, if still pending, written succeeded (and so locked); None when it is not."""
    params = succeeded_params(payment_id, gateway_payment_id, start, end, now)
    return cast("PaymentRow | None", (await conn.execute(_PURCHASE_PAID, params)).first())


async def mark_failed(
    conn: AsyncConnection,
    payment_id: str,
    *,
    code: str,
    gateway_payment_id: str | None,
    now: _dt.datetime,
    cancel_due_at: _dt.datetime | None,
) -> None:
    await conn.execute(
        update(payments)
        .where(payments.c.id == payment_id)
        .values(
            status=PaymentStatus.FAILED,
            failure_code=code,
            gateway_payment_id=gateway_payment_id,
            client_secret=None,
            updated_at=now,
            gateway_cancel_due_at=cancel_due_at,
        )
    )


def cancel_due(wall: _dt.datetime) -> ColumnElement[Any]:
    """B1: the mark of a pending payment being failed or abandoned: due now if it is a purchase whose PaymentIntent
    exists at the gateway (a charge that got no answer has none recorded: if it succeeds all the same, its webhook
    finds it by the key in its metadata and it is refunded). Renewals are off-session: nobody can complete them."""
    return case(
        (and_(payments.c.purpose == PaymentPurpose.PURCHASE, payments.c.gateway_payment_id.is_not(None)), wall),
        else_=None,
    )


async def fail_pending(
    conn: AsyncConnection,
    *,
    code: str,
    now: _dt.datetime,
    wall: _dt.datetime,
    subscription_ids: list[str] | None = None,
    customer_id: str | None = None,
) -> list[PaymentRow]:
    """Fail every pending payment of these subscriptions (or of this customer) with `code`: their purchase, renewal
    or retry is abandoned (an expiry, a cancellation, a termination). B1: a purchase whose PaymentIntent exists is
    marked to be cancelled at the gateway (`cancel_due`). Returns the payments as written."""
    stmt = update(payments).where(payments.c.status == PaymentStatus.PENDING)
    if subscription_ids is not None:
        stmt = stmt.where(payments.c.subscription_id.in_(subscription_ids))
    if customer_id is not None:
        stmt = stmt.where(payments.c.customer_id == customer_id)
    if subscription_ids is None and customer_id is None:
        raise ValueError("fail_pending needs subscription_ids or customer_id")
    stmt = stmt.values(
        status=PaymentStatus.FAILED, failure_code=code, updated_at=now, gateway_cancel_due_at=cancel_due(wall)
    )
    return cast("list[PaymentRow]", (await conn.execute(stmt.returning(*payments.c))).all())


async def spend_credit(conn: AsyncConnection, entries: list[dict[str, Any]]) -> None:
    """R2: the credit spent by payments that succeeded, once per payment (a repeat changes nothing)."""
    await insert_ignoring_conflict(conn, credit_entries, entries, conflict_on=["payment_id"])


async def record_gateway_customer(conn: AsyncConnection, customer_id: str, gateway_customer_id: str) -> None:
    """The gateway's customer that our customer's payments are charged to, recorded once."""
    await conn.execute(
        update(customers)
        .where(customers.c.id == customer_id, customers.c.gateway_customer_id.is_(None))
        .values(gateway_customer_id=gateway_customer_id)
    )


# B1: cancellations at the gateway (app/payments/corrections.py) ------------------------------------------------


async def claim_cancellations(
    conn: AsyncConnection,
    *,
    wall: _dt.datetime,
    lease_until: _dt.datetime,
    limit: int,
    postgres: bool,
    payment_ids: list[str] | None = None,
    intent_ids: list[str] | None = None,
) -> list[CancellationRow]:
    """The payments whose cancellation mark is due (only those of `payment_ids` or `intent_ids`, if given), the
    mark moved on to `lease_until` (`app.claims.claim_batch`: SKIP LOCKED on PostgreSQL)."""
    stmt = select(payments.c.id, payments.c.gateway_payment_id).order_by(payments.c.id)
    if payment_ids is not None:
        stmt = stmt.where(payments.c.id.in_(payment_ids))
    if intent_ids is not None:
        stmt = stmt.where(payments.c.gateway_payment_id.in_(intent_ids))
    stmt = stmt.where(payments.c.gateway_cancel_due_at <= wall)
    rows = await claim_batch(
        conn,
        stmt,
        of=payments,
        limit=limit,
        postgres=postgres,
        lease=payments.c.gateway_cancel_due_at,
        until=lease_until,
    )
    return cast("list[CancellationRow]", list(rows))


async def clear_cancel_mark(conn: AsyncConnection, payment_id: str, lease: _dt.datetime) -> None:
    """The gateway answered a cancellation: its mark is cleared, if this run still holds it (`lease`)."""
    await conn.execute(
        update(payments)
        .where(payments.c.id == payment_id, payments.c.gateway_cancel_due_at == lease)
        .values(gateway_cancel_due_at=None)
    )


async def count_cancel_refusal(conn: AsyncConnection, payment_id: str, lease: _dt.datetime) -> RefusalRow | None:
    """One more refusal of a cancellation this run holds (`lease`); None when it no longer holds it."""
    row = (
        await conn.execute(
            update(payments)
            .where(payments.c.id == payment_id, payments.c.gateway_cancel_due_at == lease)
            .values(gateway_cancel_refusals=payments.c.gateway_cancel_refusals + 1)
            .returning(payments.c.gateway_cancel_refusals, payments.c.customer_id, payments.c.gateway_payment_id)
        )
    ).first()
    return cast("RefusalRow | None", row)


async def drop_cancel_mark(conn: AsyncConnection, payment_id: str) -> None:
    """A cancellation given up: the job stops sending it."""
    await conn.execute(update(payments).where(payments.c.id == payment_id).values(gateway_cancel_due_at=None))
