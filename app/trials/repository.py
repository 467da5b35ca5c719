"""Every query about trials."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import Principal
from app.errors import NotFound
from app.models import customers, trials


async def get_visible(conn: AsyncConnection, principal: Principal, trial_id: str):
    stmt = select(trials).where(trials.c.id == trial_id)
    if not principal.is_ops:
        stmt = stmt.join(customers, customers.c.id == trials.c.customer_id).where(
            customers.c.external_id == principal.sub)
    row = (await conn.execute(stmt)).first()
    if row is None:
        raise NotFound(f"no trial {trial_id!r}")
    return row


def for_customer(customer_id: str):  # noqa: ANN201
    return select(trials).where(trials.c.customer_id == customer_id)
