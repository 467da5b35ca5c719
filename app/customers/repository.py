"""Every query about customers."""

from __future__ import annotations

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import Principal
from app.errors import NotFound
from app.models import customers


async def get_visible(conn: AsyncConnection, principal: Principal, customer_id: str, *, for_update: bool = False):
    """The customer, if the caller may see it; otherwise 404 (a customer token sees only its own)."""
    stmt = select(customers).where(customers.c.id == customer_id)
    if not principal.is_ops:
        stmt = stmt.where(customers.c.external_id == principal.sub)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).first()
    if row is None:
        raise NotFound(f"no customer {customer_id!r}")
    return row


async def get_owned(conn: AsyncConnection, principal: Principal, table: Table, object_id: str, noun: str, *,
                    for_update: bool = False):
    """A row of `table` (which has a `customer_id`) if the caller may see it; otherwise 404. The one place where a
    customer token is limited to its own customer's objects (existence is not revealed)."""
    stmt = select(table).where(table.c.id == object_id)
    if not principal.is_ops:
        stmt = stmt.join(customers, customers.c.id == table.c.customer_id).where(
            customers.c.external_id == principal.sub)
    if for_update:
        stmt = stmt.with_for_update(of=table)
    row = (await conn.execute(stmt)).first()
    if row is None:
        raise NotFound(f"no {noun} {object_id!r}")
    return row


async def get(conn: AsyncConnection, customer_id: str):
    return (await conn.execute(select(customers).where(customers.c.id == customer_id))).one()
