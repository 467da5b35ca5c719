"""Account credit balances, from the append-only ledger."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import credit_entries, subscriptions


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
