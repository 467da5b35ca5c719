"""Read-side queries about a customer: the records of their data export (D1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import audit_events, credit_entries, events, notices, payments, refunds, subscriptions, trials


@dataclass(frozen=True, slots=True)
class CustomerRecords:
    """D1: every row linked to a customer, oldest first in each family (full rows, as each `to_api` reads them)."""

    subscriptions: Sequence[Row[Any]]
    trials: Sequence[Row[Any]]
    payments: Sequence[Row[Any]]
    refunds: Sequence[Row[Any]]
    credits: Sequence[Row[Any]]
    notices: Sequence[Row[Any]]
    audit_events: Sequence[Row[Any]]
    events: Sequence[Row[Any]]  # the domain events, whose snapshots show the customer too


async def _of(conn: AsyncConnection, table: Table, customer_id: str) -> Sequence[Row[Any]]:
    result = await conn.execute(select(table).where(table.c.customer_id == customer_id).order_by(table.c.id))
    return result.all()


async def customer_records(conn: AsyncConnection, customer_id: str) -> CustomerRecords:
    """D1: what the export of the customer shows besides the customer, one read per family."""
    return CustomerRecords(
        subscriptions=await _of(conn, subscriptions, customer_id),
        trials=await _of(conn, trials, customer_id),
        payments=await _of(conn, payments, customer_id),
        refunds=await _of(conn, refunds, customer_id),
        credits=await _of(conn, credit_entries, customer_id),
        notices=await _of(conn, notices, customer_id),
        audit_events=await _of(conn, audit_events, customer_id),
        events=await _of(conn, events, customer_id),
    )
