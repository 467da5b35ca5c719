"""Every query about subscriptions."""

from __future__ import annotations

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import Principal
from app.customers.repository import get_owned
from app.models import payments, subscriptions

LIVE = ("incomplete", "active", "past_due")


async def get_visible(
    conn: AsyncConnection,
    principal: Principal,
    subscription_id: str,
    *,
    for_update: bool = False,
    with_plan_name: bool = False,
):
    return await get_owned(
        conn,
        principal,
        subscriptions,
        subscription_id,
        "subscription",
        for_update=for_update,
        with_plan_name=with_plan_name,
    )


_GET = select(subscriptions).where(subscriptions.c.id == bindparam("subscription_id"))
_GET_FOR_UPDATE = _GET.with_for_update()
# The changes a customer makes to their subscription, built once (values travel as parameters); each returns
# the row as changed, so no second read is needed.
SET_CANCELLATION = (
    update(subscriptions)
    .where(subscriptions.c.id == bindparam("subscription_id"))
    .values(cancel_at_period_end=bindparam("flag"), canceled_at=bindparam("at"))
    .returning(*subscriptions.c)
)
SET_PAYMENT_METHOD = (
    update(subscriptions)
    .where(subscriptions.c.id == bindparam("subscription_id"))
    .values(payment_method=bindparam("method"))
    .returning(*subscriptions.c)
)


async def get(conn: AsyncConnection, subscription_id: str, *, for_update: bool = False):
    return (await conn.execute(_GET_FOR_UPDATE if for_update else _GET, {"subscription_id": subscription_id})).one()


async def live_for_customer(conn: AsyncConnection, customer_id: str):
    return (
        await conn.execute(
            select(subscriptions).where(subscriptions.c.customer_id == customer_id, subscriptions.c.status.in_(LIVE))
        )
    ).first()


async def pending_client_secret(conn: AsyncConnection, subscription_id: str) -> str | None:
    """The client secret of an incomplete purchase's payment that awaits the customer's action."""
    return (
        await conn.execute(
            select(payments.c.client_secret).where(
                payments.c.subscription_id == subscription_id,
                payments.c.purpose == "purchase",
                payments.c.status == "pending",
            )
        )
    ).scalar()


def for_customer(customer_id: str):  # noqa: ANN201
    return select(subscriptions).where(subscriptions.c.customer_id == customer_id)
