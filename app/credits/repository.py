"""Every statement about account credit: the append-only ledger (`credit_entries`) and the balances summed from it."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import credit_entries, subscriptions
from app.pagination import PageParams, fetch_page


class CreditRow(Protocol):
    """A row of `credit_entries` (app/models/credits.py)."""

    id: str
    customer_id: str
    kind: str  # CreditKind
    amount: int  # a grant is positive, a spend or a forfeit negative
    currency: str
    reason: str | None
    created_by: str
    payment_id: str | None
    policy_version: str | None
    created_at: _dt.datetime


async def get(conn: AsyncConnection, credit_id: str) -> CreditRow:
    return (await conn.execute(select(credit_entries).where(credit_entries.c.id == credit_id))).one()


async def add(conn: AsyncConnection, row: Mapping[str, Any]) -> None:
    await conn.execute(insert(credit_entries).values(row))


async def page_of_customer(
    conn: AsyncConnection, customer_id: str, params: PageParams
) -> tuple[Sequence[CreditRow], bool]:
    """One page of a customer's ledger entries, newest first, and whether there are more."""
    return await fetch_page(
        conn, select(credit_entries).where(credit_entries.c.customer_id == customer_id), credit_entries.c.id, params
    )


async def balances(conn: AsyncConnection, customer_ids: list[str], currency: str) -> dict[str, int]:
    """R2: each customer's credit in `currency` (one query for a whole batch)."""
    if not customer_ids:
        return {}
    rows = (
        await conn.execute(
            select(credit_entries.c.customer_id, func.sum(credit_entries.c.amount))
            .where(credit_entries.c.customer_id.in_(customer_ids), credit_entries.c.currency == currency)
            .group_by(credit_entries.c.customer_id)
        )
    ).all()
    found = {customer_id: int(total or 0) for customer_id, total in rows}
    return {customer_id: found.get(customer_id, 0) for customer_id in customer_ids}


async def all_balances(conn: AsyncConnection, customer_id: str) -> dict[str, int]:
    """R2: the customer's credit in each currency they have any in."""
    rows = (
        await conn.execute(
            select(credit_entries.c.currency, func.sum(credit_entries.c.amount))
            .where(credit_entries.c.customer_id == customer_id)
            .group_by(credit_entries.c.currency)
        )
    ).all()
    return {currency: int(total) for currency, total in rows if total}


async def billing_currency_facts(conn: AsyncConnection, customer_id: str) -> tuple[str | None, str | None]:
    """R2: the currency of the customer's latest subscription and of their first credit, in one statement (the
    facts `policies.billing_currency` decides from)."""
    latest_subscription = (
        select(subscriptions.c.currency)
        .where(subscriptions.c.customer_id == customer_id)
        .order_by(subscriptions.c.created_at.desc(), subscriptions.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    first_credit = (
        select(credit_entries.c.currency)
        .where(credit_entries.c.customer_id == customer_id)
        .order_by(credit_entries.c.created_at, credit_entries.c.id)
        .limit(1)
        .scalar_subquery()
    )
    row = (await conn.execute(select(latest_subscription.label("subscription"), first_credit.label("credit")))).one()
    return row.subscription, row.credit
