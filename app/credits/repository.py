"""Account credit balances, from the append-only ledger."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import credit_entries


async def balances(conn: AsyncConnection, customer_ids: list[str], currency: str) -> dict[str, int]:
    """R2: each customer's credit in `currency` (one query for a whole batch)."""
    if not customer_ids:
        return {}
    rows = (await conn.execute(
        select(credit_entries.c.customer_id, func.sum(credit_entries.c.amount))
        .where(credit_entries.c.customer_id.in_(customer_ids), credit_entries.c.currency == currency)
        .group_by(credit_entries.c.customer_id)
    )).all()
    found = {customer_id: int(total or 0) for customer_id, total in rows}
    return {customer_id: found.get(customer_id, 0) for customer_id in customer_ids}


async def all_balances(conn: AsyncConnection, customer_id: str) -> dict[str, int]:
    rows = (await conn.execute(
        select(credit_entries.c.currency, func.sum(credit_entries.c.amount))
        .where(credit_entries.c.customer_id == customer_id).group_by(credit_entries.c.currency)
    )).all()
    return {currency: int(total) for currency, total in rows if total}
