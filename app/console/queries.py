"""Read-side queries of the ops console's pages: each a list, newest first, or one row, on the caller's
connection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, Row, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import (
    audit_events,
    credit_entries,
    credit_notes,
    customers,
    invoices,
    notices,
    payments,
    refunds,
    subscriptions,
    trials,
)

# A customer's history, one section each, with the table it comes from.
SECTIONS = {
    "subscriptions": subscriptions,
    "trials": trials,
    "payments": payments,
    "refunds": refunds,
    "credits": credit_entries,
    "invoices": invoices,  # I1/I2: listed with links to their PDFs
    "credit_notes": credit_notes,
    "notices": notices,
    "audit_events": audit_events,
}


async def newest(
    conn: AsyncConnection, stmt: Select[Any], id_column: Column[str], limit: int
) -> tuple[list[Row[Any]], bool]:
    """At most `limit` rows of `stmt`, newest first by id, and whether there were more."""
    rows = list((await conn.execute(stmt.order_by(id_column.desc()).limit(limit + 1))).all())
    return rows[:limit], len(rows) > limit


async def customer_section(
    conn: AsyncConnection, section: str, customer_id: str, limit: int
) -> tuple[list[Row[Any]], bool]:
    """One section of a customer's page (`SECTIONS`): its newest `limit` rows, and whether there are more."""
    table = SECTIONS[section]
    return await newest(conn, select(table).where(table.c.customer_id == customer_id), table.c.id, limit)


async def find_customers(conn: AsyncConnection, query: str, email: str, limit: int) -> list[Row[Any]]:
    """Customers by id, external id, or normalised `email` (case-insensitive), newest first."""
    stmt = (
        select(customers)
        .where(
            or_(
                customers.c.id == query,
                customers.c.external_id == query,
                # Stored emails are already trimmed (P1); lower() on both sides is the case-insensitive comparison
                # both databases can do (SQLite's lower() folds ASCII only, as does casefold() on ASCII addresses).
                func.lower(func.trim(customers.c.email)) == email.lower(),
            )
        )
        .order_by(customers.c.id.desc())
        .limit(limit)
    )
    return list((await conn.execute(stmt)).all())


async def payment_currencies(conn: AsyncConnection, customer_id: str) -> Sequence[str]:
    """The currencies the customer has paid in."""
    return (
        (await conn.execute(select(payments.c.currency).where(payments.c.customer_id == customer_id).distinct()))
        .scalars()
        .all()
    )


async def subscription(conn: AsyncConnection, subscription_id: str | None) -> Row[Any] | None:
    return (await conn.execute(select(subscriptions).where(subscriptions.c.id == subscription_id))).first()


async def refunds_of(conn: AsyncConnection, payment_id: str) -> list[Row[Any]]:
    """A payment's refunds, newest first."""
    return list(
        (
            await conn.execute(select(refunds).where(refunds.c.payment_id == payment_id).order_by(refunds.c.id.desc()))
        ).all()
    )
