"""The sandbox's own tables: the sandbox gateway's ledger (`sandbox_charges`, `sandbox_refunds`: what Stripe would
hold, app/gateways/sandbox.py) and the sandbox clock (`sandbox_clock`, app/clock.py). Statements run on every
request (the clock's read) or every charge are built once, at import."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import insert_ignoring_conflict, insert_ignoring_returning
from app.models import sandbox_charges, sandbox_clock, sandbox_refunds


class ChargeStatus(StrEnum):
    """A sandbox charge's state, as a PaymentIntent's at Stripe."""

    SUCCEEDED = "succeeded"
    REQUIRES_ACTION = "requires_action"
    FAILED = "failed"
    CANCELED = "canceled"  # B1: cancelled while waiting for the customer's action


class SandboxCharge(Protocol):
    idempotency_key: str
    payment_intent_id: str
    amount: int
    currency: str
    status: str
    decline_code: str | None
    refunded_amount: int


class SandboxRefund(Protocol):
    idempotency_key: str
    payment_intent_id: str
    amount: int
    refund_id: str | None
    status: str


_CHARGES_BY_KEY = select(sandbox_charges).where(
    sandbox_charges.c.idempotency_key.in_(bindparam("keys", expanding=True))
)
_COMPLETE_ACTION = (
    update(sandbox_charges)
    .where(
        sandbox_charges.c.payment_intent_id == bindparam("intent"),
        sandbox_charges.c.status.in_((ChargeStatus.REQUIRES_ACTION, ChargeStatus.CANCELED)),
    )
    .values(status=ChargeStatus.SUCCEEDED)
)
_CANCEL = (
    update(sandbox_charges)
    .where(
        sandbox_charges.c.payment_intent_id == bindparam("intent"),
        sandbox_charges.c.status == ChargeStatus.REQUIRES_ACTION,
    )
    .values(status=ChargeStatus.CANCELED)
)
_CHARGE_STATUS = select(sandbox_charges.c.status).where(sandbox_charges.c.payment_intent_id == bindparam("intent"))
_READ_CLOCK = select(sandbox_clock.c.now).where(sandbox_clock.c.id == 1)


async def record_charges(conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[SandboxCharge]:
    """The charges inserted (one statement); a row whose idempotency key is recorded already is not among them."""
    recorded: list[SandboxCharge] = await insert_ignoring_returning(
        conn, sandbox_charges, rows, conflict_on=["idempotency_key"]
    )
    return recorded


async def charges_by_key(conn: AsyncConnection, keys: Sequence[str]) -> list[SandboxCharge]:
    rows: list[SandboxCharge] = list((await conn.execute(_CHARGES_BY_KEY, {"keys": list(keys)})).all())
    return rows


async def complete_action(conn: AsyncConnection, payment_intent_id: str) -> None:
    """The charge waiting for the customer's action (or cancelled while it waited) booked succeeded."""
    await conn.execute(_COMPLETE_ACTION, {"intent": payment_intent_id})


async def cancel(conn: AsyncConnection, payment_intent_id: str) -> str | None:
    """Cancel the charge if it waits for the customer's action: its status then, or None if there is no such
    charge."""
    await conn.execute(_CANCEL, {"intent": payment_intent_id})
    status: str | None = (await conn.execute(_CHARGE_STATUS, {"intent": payment_intent_id})).scalar()
    return status


async def lock_charge(conn: AsyncConnection, payment_intent_id: str) -> SandboxCharge:
    row: SandboxCharge = (
        await conn.execute(
            select(sandbox_charges).where(sandbox_charges.c.payment_intent_id == payment_intent_id).with_for_update()
        )
    ).one()
    return row


async def record_refund(conn: AsyncConnection, row: dict[str, Any]) -> list[SandboxRefund]:
    """The refund inserted, or nothing if its idempotency key is recorded already."""
    recorded: list[SandboxRefund] = await insert_ignoring_returning(
        conn, sandbox_refunds, row, conflict_on=["idempotency_key"]
    )
    return recorded


async def add_refunded(conn: AsyncConnection, payment_intent_id: str, amount: int) -> None:
    await conn.execute(
        update(sandbox_charges)
        .where(sandbox_charges.c.payment_intent_id == payment_intent_id)
        .values(refunded_amount=sandbox_charges.c.refunded_amount + amount)
    )


async def refund_by_key(conn: AsyncConnection, idempotency_key: str) -> SandboxRefund:
    row: SandboxRefund = (
        await conn.execute(select(sandbox_refunds).where(sandbox_refunds.c.idempotency_key == idempotency_key))
    ).one()
    return row


async def clock_now(conn: AsyncConnection) -> _dt.datetime | None:
    """The sandbox clock's time, None before its first use."""
    now: _dt.datetime | None = (await conn.execute(_READ_CLOCK)).scalar()
    return now


async def start_clock(conn: AsyncConnection, at: _dt.datetime) -> _dt.datetime:
    """The sandbox clock started at `at`, unless a concurrent first use started it already: its time."""
    await insert_ignoring_conflict(conn, sandbox_clock, {"id": 1, "now": at})
    now: _dt.datetime = (await conn.execute(_READ_CLOCK)).scalar_one()
    return now


async def advance_clock(conn: AsyncConnection, target: _dt.datetime) -> bool:
    """The sandbox clock moved to `target` if that is not back in time: whether it moved."""
    result = await conn.execute(
        update(sandbox_clock).where(sandbox_clock.c.id == 1, sandbox_clock.c.now <= target).values(now=target)
    )
    moved: bool = result.rowcount == 1
    return moved
