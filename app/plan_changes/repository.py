"""Every query about plan changes (C3, C4)."""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import payments, plan_changes, subscriptions
from policies.states import PlanChangeStatus, SubscriptionStatus

_PENDING = select(plan_changes).where(
    plan_changes.c.subscription_id == bindparam("subscription_id"),
    plan_changes.c.status == PlanChangeStatus.PENDING,
    plan_changes.c.kind == bindparam("kind"),
)
_SHOWN = (
    select(plan_changes, payments.c.client_secret)
    .join(subscriptions, subscriptions.c.id == plan_changes.c.subscription_id)
    .outerjoin(payments, payments.c.id == plan_changes.c.payment_id)
    .where(
        plan_changes.c.subscription_id == bindparam("subscription_id"),
        plan_changes.c.status == PlanChangeStatus.PENDING,
        subscriptions.c.status != SubscriptionStatus.CANCELED,  # an ended subscription changes to nothing
    )
    .order_by(plan_changes.c.kind)  # 'now' (C4, waiting for action) before 'period_end' (C3)
)
_LOCK_CHANGE_OF_PAYMENT = (
    select(plan_changes).where(plan_changes.c.payment_id == bindparam("payment_id")).with_for_update()
)
# Set-based, for a renewal batch: the pending period-end changes of these subscriptions.
_PENDING_OF = select(plan_changes).where(
    plan_changes.c.subscription_id.in_(bindparam("ids", expanding=True)),
    plan_changes.c.status == PlanChangeStatus.PENDING,
    plan_changes.c.kind == "period_end",
)
_DECIDE = (
    update(plan_changes)
    .where(plan_changes.c.id.in_(bindparam("ids", expanding=True)), plan_changes.c.status == PlanChangeStatus.PENDING)
    .values(status=bindparam("status"), decided_at=bindparam("at"))
    .returning(*plan_changes.c)
)
# C3: the subscription moved to the new plan at the period end (values per row, one statement for the batch).
_MOVE_TO_PLAN = (
    update(subscriptions)
    .where(subscriptions.c.id == bindparam("b_id"))
    .values(
        plan_id=bindparam("b_plan_id"),
        plan_code=bindparam("b_plan_code"),
        interval=bindparam("b_interval"),
        price_amount=bindparam("b_price"),
        anchor_at=bindparam("b_anchor"),
        anchor_index=bindparam("b_anchor_index"),
    )
)


async def pending(conn: AsyncConnection, subscription_id: str, kind: str = "period_end"):  # noqa: ANN201
    """The subscription's pending change of this kind, or None (at most one: a unique index holds it)."""
    return (await conn.execute(_PENDING, {"subscription_id": subscription_id, "kind": kind})).first()


async def shown(conn: AsyncConnection, subscription_id: str):  # noqa: ANN201
    """The pending change the API shows (a C4 upgrade waiting for the customer's action first, with its payment's
    client secret as `client_secret`), or None."""
    return (await conn.execute(_SHOWN, {"subscription_id": subscription_id})).first()


async def of_payment(conn: AsyncConnection, payment_id: str):  # noqa: ANN201
    """The C4 change a payment was made for, locked (after its subscription and payment), or None."""
    return (await conn.execute(_LOCK_CHANGE_OF_PAYMENT, {"payment_id": payment_id})).first()


async def pending_period_end(conn: AsyncConnection, subscription_ids: list[str]) -> list:
    return list((await conn.execute(_PENDING_OF, {"ids": subscription_ids})).all()) if subscription_ids else []


async def add(conn: AsyncConnection, row: dict) -> None:
    await conn.execute(insert(plan_changes).values(row))


async def decide(conn: AsyncConnection, ids: list[str], status: PlanChangeStatus, at: _dt.datetime) -> list:
    """Mark pending changes applied, withdrawn or expired; returns those that were still pending, as written."""
    if not ids:
        return []
    return list((await conn.execute(_DECIDE, {"ids": ids, "status": status, "at": at})).all())


async def move_to_plans(conn: AsyncConnection, rows: list[dict]) -> None:
    """C3/B4: subscriptions moved to their new plans, re-anchored at the period end (`_MOVE_TO_PLAN`)."""
    if rows:
        await conn.execute(_MOVE_TO_PLAN, rows)


async def record_forfeit(conn: AsyncConnection, change_id: str, days: int, value: int) -> None:
    """C4/R1: what the upgrade forfeited of the old period (information: never refunded)."""
    await conn.execute(
        update(plan_changes).where(plan_changes.c.id == change_id).values(forfeited_days=days, forfeited_value=value)
    )
