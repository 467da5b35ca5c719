"""Every query about payments."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import Principal
from app.errors import NotFound
from app.models import customers, payments


async def get_visible(conn: AsyncConnection, principal: Principal, payment_id: str):
    stmt = select(payments).where(payments.c.id == payment_id)
    if not principal.is_ops:
        stmt = stmt.join(customers, customers.c.id == payments.c.customer_id).where(
            customers.c.external_id == principal.sub)
    row = (await conn.execute(stmt)).first()
    if row is None:
        raise NotFound(f"no payment {payment_id!r}")
    return row


async def by_key(conn: AsyncConnection, idempotency_key: str, *, for_update: bool = False):
    stmt = select(payments).where(payments.c.idempotency_key == idempotency_key)
    return (await conn.execute(stmt.with_for_update() if for_update else stmt)).first()


async def by_gateway_id(conn: AsyncConnection, gateway_payment_id: str, *, for_update: bool = False):
    stmt = select(payments).where(payments.c.gateway_payment_id == gateway_payment_id)
    return (await conn.execute(stmt.with_for_update() if for_update else stmt)).first()
