"""The statements of applying a gateway's events (app/webhooks/service.py): the inbox (`webhook_events`), and
what the events write to payments and refunds beyond what their use cases (app/subscriptions/charging.py,
app/refunds/service.py) write. Statements run on every event are built once, at import."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Protocol

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import insert_ignoring_conflict
from app.models import payments, refunds, webhook_events
from policies.states import PaymentPurpose, PaymentStatus, RefundStatus


class PendingRefund(Protocol):
    id: str
    amount: int


# A pending purchase a failure event may be about: by its PaymentIntent, else by the key in the intent's metadata.
_PENDING_PURCHASE = (
    select(payments.c.id)
    .where(
        or_(payments.c.gateway_payment_id == bindparam("intent"), payments.c.idempotency_key == bindparam("key")),
        payments.c.purpose == PaymentPurpose.PURCHASE,
        payments.c.status == PaymentStatus.PENDING,
    )
    .limit(1)
)
_SETTLED_REFUNDS = select(func.coalesce(func.sum(refunds.c.amount), 0)).where(
    refunds.c.payment_id == bindparam("payment_id"), refunds.c.status == RefundStatus.SUCCEEDED
)
_PENDING_REFUNDS = (
    select(refunds.c.id, refunds.c.amount)
    .where(refunds.c.payment_id == bindparam("payment_id"), refunds.c.status == RefundStatus.PENDING)
    .order_by(refunds.c.created_at, refunds.c.id)
)
_STORED = select(webhook_events.c.id).where(webhook_events.c.id == bindparam("event_id"))


async def pending_purchase(conn: AsyncConnection, gateway_payment_id: str, key: str) -> str | None:
    """The id of the pending purchase paid by this gateway payment, or charged with this idempotency key."""
    payment_id: str | None = (
        await conn.execute(_PENDING_PURCHASE, {"intent": gateway_payment_id, "key": key})
    ).scalar()
    return payment_id


async def refund_pending(conn: AsyncConnection, refund_id: str) -> bool:
    """Whether the refund `refund_id` is booked and pending."""
    found = await conn.execute(
        select(refunds.c.id).where(refunds.c.id == refund_id, refunds.c.status == RefundStatus.PENDING)
    )
    return found.first() is not None


async def cancellation_confirmed(conn: AsyncConnection, payment_id: str) -> None:
    """B1: the payment's gateway payment was cancelled: nothing is left for the cancellation job."""
    await conn.execute(update(payments).where(payments.c.id == payment_id).values(gateway_cancel_due_at=None))


async def cancellation_due_at(conn: AsyncConnection, payment_id: str, due_at: _dt.datetime) -> None:
    """B1: the payment's cancellation, sent without an answer, is due again at `due_at` (if still to be sent)."""
    await conn.execute(
        update(payments)
        .where(payments.c.id == payment_id, payments.c.gateway_cancel_due_at.is_not(None))
        .values(gateway_cancel_due_at=due_at)
    )


async def settled_refunds(conn: AsyncConnection, payment_id: str) -> int:
    """The sum of the payment's succeeded refunds."""
    return int((await conn.execute(_SETTLED_REFUNDS, {"payment_id": payment_id})).scalar_one())


async def pending_refunds(conn: AsyncConnection, payment_id: str) -> list[PendingRefund]:
    """The payment's pending refunds, oldest first."""
    rows: list[PendingRefund] = list((await conn.execute(_PENDING_REFUNDS, {"payment_id": payment_id})).all())
    return rows


async def refund_known(conn: AsyncConnection, gateway_refund_id: str, ours: str | None) -> bool:
    """Whether a refund is recorded with this gateway refund id, or with our id `ours`."""
    found = await conn.execute(
        select(refunds.c.id).where((refunds.c.gateway_refund_id == gateway_refund_id) | (refunds.c.id == (ours or "")))
    )
    return found.first() is not None


async def add_gateway_refund(conn: AsyncConnection, refund: dict[str, Any], now: _dt.datetime) -> None:
    """A refund the gateway made, recorded, and counted on its payment."""
    await conn.execute(insert(refunds).values(refund))
    await conn.execute(
        update(payments)
        .where(payments.c.id == refund["payment_id"])
        .values(refunded_amount=payments.c.refunded_amount + refund["amount"], updated_at=now)
    )


async def store_event(conn: AsyncConnection, event: dict[str, Any]) -> bool:
    """The event in the inbox, unless its id is there already (False: a repeat, or a concurrent delivery)."""
    return await insert_ignoring_conflict(conn, webhook_events, event, conflict_on=["id"]) == 1


async def event_stored(conn: AsyncConnection, event_id: str) -> bool:
    return (await conn.execute(_STORED, {"event_id": event_id})).first() is not None
