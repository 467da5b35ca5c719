"""Every statement about refunds, and about the part of a payment that refunds keep: its `refunded_amount`, the
reservation made under the payment's row lock before the gateway is called (app/refunds/service.py).

Rows come back as the typed shapes below (`typing.Protocol`s: a SQLAlchemy row read through a type, no copy).
The statements run on every refund and every retry batch are built once, at import; values travel as parameters.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.claims import claim_batch
from app.db import insert_ignoring_conflict
from app.models import payments, refunds
from app.pagination import PageParams, fetch_page
from policies.states import RefundSource, RefundStatus


class RefundRow(Protocol):
    """A row of `refunds` (app/models/refunds.py)."""

    id: str
    payment_id: str
    customer_id: str
    amount: int
    currency: str
    reason: str
    created_by: str
    source: str  # RefundSource
    status: str  # RefundStatus
    gateway_refund_id: str | None
    failure_reason: str | None
    policy_version: str | None
    created_at: _dt.datetime
    updated_at: _dt.datetime
    gateway_attempted_at: _dt.datetime | None
    request_key: str | None
    credit_note_id: str | None


class RefundedPayment(Protocol):
    """What a refund reads of its payment (a row of `payments`)."""

    id: str
    customer_id: str
    subscription_id: str
    amount: int
    refunded_amount: int
    currency: str
    status: str  # PaymentStatus
    gateway_payment_id: str | None


class RefundToSend(Protocol):
    """A pending refund to ask the gateway for: its id (the gateway's idempotency key), its amount, the
    PaymentIntent it refunds."""

    id: str
    amount: int
    gateway_payment_id: str


async def lock_payment(conn: AsyncConnection, payment_id: str) -> RefundedPayment:
    """The payment, locked until the transaction ends: reservations on it are made one at a time."""
    return (await conn.execute(select(payments).where(payments.c.id == payment_id).with_for_update())).one()


async def get(conn: AsyncConnection, refund_id: str) -> RefundRow:
    return (await conn.execute(select(refunds).where(refunds.c.id == refund_id))).one()


async def lock(conn: AsyncConnection, refund_id: str) -> RefundRow:
    """The refund, locked until the transaction ends (its settlement is decided once)."""
    return (await conn.execute(select(refunds).where(refunds.c.id == refund_id).with_for_update())).one()


async def by_request_key(conn: AsyncConnection, request_key: str) -> RefundRow | None:
    """The refund a keyed request made (app/refunds/service.py: `request_key`), if it made one."""
    return (await conn.execute(select(refunds).where(refunds.c.request_key == request_key))).first()


async def page_of_payment(
    conn: AsyncConnection, payment_id: str, params: PageParams
) -> tuple[Sequence[RefundRow], bool]:
    """One page of a payment's refunds, newest first, and whether there are more."""
    return await fetch_page(conn, select(refunds).where(refunds.c.payment_id == payment_id), refunds.c.id, params)


async def add(conn: AsyncConnection, row: Mapping[str, Any]) -> None:
    await conn.execute(insert(refunds).values(row))


async def add_once(conn: AsyncConnection, row: Mapping[str, Any]) -> bool:
    """Write the refund unless one with its id exists already; whether it was written."""
    return await insert_ignoring_conflict(conn, refunds, dict(row), conflict_on=["id"]) == 1


async def reserve(conn: AsyncConnection, payment_id: str, amount: int, now: _dt.datetime) -> None:
    """R2: `amount` counted as refunded on the payment (reserved) while its refund is pending or once made."""
    await conn.execute(
        update(payments)
        .where(payments.c.id == payment_id)
        .values(refunded_amount=payments.c.refunded_amount + amount, updated_at=now)
    )


async def release(conn: AsyncConnection, payment_id: str, amount: int, now: _dt.datetime) -> None:
    """R2: the reservation of a refund that failed given back to the payment."""
    await conn.execute(
        update(payments)
        .where(payments.c.id == payment_id)
        .values(refunded_amount=payments.c.refunded_amount - amount, updated_at=now)
    )


async def mark_succeeded(conn: AsyncConnection, refund_id: str, gateway_refund_id: str, now: _dt.datetime) -> None:
    await conn.execute(
        update(refunds)
        .where(refunds.c.id == refund_id)
        .values(status=RefundStatus.SUCCEEDED, gateway_refund_id=gateway_refund_id, updated_at=now)
    )


async def mark_failed(conn: AsyncConnection, refund_id: str, failure_reason: str, now: _dt.datetime) -> None:
    await conn.execute(
        update(refunds)
        .where(refunds.c.id == refund_id)
        .values(status=RefundStatus.FAILED, failure_reason=failure_reason, updated_at=now)
    )


_PENDING_CORRECTIONS = (
    select(refunds.c.id, refunds.c.amount, payments.c.gateway_payment_id)
    .join(payments, payments.c.id == refunds.c.payment_id)
    .where(
        payments.c.gateway_payment_id == bindparam("intent"),
        refunds.c.source == RefundSource.CORRECTION,
        refunds.c.status == RefundStatus.PENDING,
    )
)


async def pending_corrections(conn: AsyncConnection, gateway_payment_id: str) -> Sequence[RefundToSend]:
    """B1: the correction refund booked for the payment of this PaymentIntent, if it is still pending."""
    return (await conn.execute(_PENDING_CORRECTIONS, {"intent": gateway_payment_id})).all()


async def claim_unanswered(
    conn: AsyncConnection, *, answered_after: _dt.datetime, mark: _dt.datetime, limit: int
) -> Sequence[RefundToSend]:
    """R2: pending refunds whose last gateway call was before `answered_after` (real time), at most `limit`, taken
    by this transaction (app/claims.py) with their mark set to `mark`: another run leaves them alone until it is as
    old again."""
    due = (
        select(refunds.c.id, refunds.c.amount, payments.c.gateway_payment_id)
        .join(payments, payments.c.id == refunds.c.payment_id)
        .where(
            refunds.c.status == RefundStatus.PENDING,
            # null: written by an older version (a dashboard refund is never pending), taken as unanswered
            or_(refunds.c.gateway_attempted_at.is_(None), refunds.c.gateway_attempted_at <= answered_after),
        )
        .order_by(refunds.c.id)
    )
    return await claim_batch(
        conn,
        due,
        of=refunds,
        limit=limit,
        postgres=conn.dialect.name == "postgresql",
        lease=refunds.c.gateway_attempted_at,
        until=mark,
    )


# The mark moved to the real time of a call, provided the run that set `claimed` still holds it.
_REMARK = (
    update(refunds)
    .where(
        refunds.c.id == bindparam("refund_id"),
        refunds.c.status == RefundStatus.PENDING,
        refunds.c.gateway_attempted_at == bindparam("claimed"),
    )
    .values(gateway_attempted_at=bindparam("at"))
)


async def remark(conn: AsyncConnection, refund_id: str, claimed: _dt.datetime, at: _dt.datetime) -> bool:
    """R2: the refund's mark moved from `claimed` to `at` if it is still pending and still marked `claimed`;
    whether it was (False: settled meanwhile, or taken over by another run)."""
    result = await conn.execute(_REMARK, {"refund_id": refund_id, "claimed": claimed, "at": at})
    return bool(result.rowcount)
