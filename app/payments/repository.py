"""Every query about payments."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import Principal
from app.customers.repository import get_owned
from app.models import payments


async def get_visible(conn: AsyncConnection, principal: Principal, payment_id: str):
    return await get_owned(conn, principal, payments, payment_id, "payment")


async def by_gateway_id(conn: AsyncConnection, gateway_payment_id: str, *, for_update: bool = False):
    stmt = select(payments).where(payments.c.gateway_payment_id == gateway_payment_id)
    return (await conn.execute(stmt.with_for_update() if for_update else stmt)).first()
