"""Every query about trials."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import Principal
from app.customers.repository import get_owned
from app.models import trials


async def get_visible(conn: AsyncConnection, principal: Principal, trial_id: str):
    return await get_owned(conn, principal, trials, trial_id, "trial")


def for_customer(customer_id: str):  # noqa: ANN201
    return select(trials).where(trials.c.customer_id == customer_id)
