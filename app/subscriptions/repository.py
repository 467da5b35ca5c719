"""Every query about subscriptions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import Principal
from app.customers.repository import get_owned
from app.models import payments, subscriptions

LIVE = ("incomplete", "active", "past_due")


async def get_visible(conn: AsyncConnection, principal: Principal, subscription_id: str, *,
                      for_update: bool = False):
    return await get_owned(conn, principal, subscriptions, subscription_id, "subscription", for_update=for_update)


async def get(conn: AsyncConnection, subscription_id: str, *, for_update: bool = False):
    stmt = select(subscriptions).where(subscriptions.c.id == subscription_id)
    return (await conn.execute(stmt.with_for_update() if for_update else stmt)).one()


async def live_for_customer(conn: AsyncConnection, customer_id: str):
    return (await conn.execute(select(subscriptions).where(
        subscriptions.c.customer_id == customer_id, subscriptions.c.status.in_(LIVE)))).first()


async def pending_client_secret(conn: AsyncConnection, subscription_id: str) -> str | None:
    """The client secret of an incomplete purchase's payment that awaits the customer's action."""
    return (await conn.execute(select(payments.c.client_secret).where(
        payments.c.subscription_id == subscription_id, payments.c.purpose == "purchase",
        payments.c.status == "pending"))).scalar()


def for_customer(customer_id: str):  # noqa: ANN201
    return select(subscriptions).where(subscriptions.c.customer_id == customer_id)
