"""Every query about customers."""

from __future__ import annotations

from sqlalchemy import select
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


async def get(conn: AsyncConnection, customer_id: str):
    return (await conn.execute(select(customers).where(customers.c.id == customer_id))).one()
