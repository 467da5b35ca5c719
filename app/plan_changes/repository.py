"""Every statement about plan changes (C3, C4).

Rows come back as SQLAlchemy `Row`s typed by the protocols below (no object built per row, as the other
repositories do)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any, Literal, Protocol, cast

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import payments, plan_changes, subscriptions
from policies.states import PlanChangeStatus, SubscriptionStatus

Kind = Literal["period_end", "now"]  # the `when` asked: at the period end (C3) or now (C4)
PERIOD_END: Kind = "period_end"
NOW: Kind = "now"


class PlanChangeRow(Protocol):
    """A row of `plan_changes` (app/models/plan_changes.py)."""

    id: str
    subscription_id: str
    customer_id: str
    kind: str  # Kind
    status: str  # PlanChangeStatus
    plan_id: str
    plan_code: str
    interval: str  # Interval
    price_amount: int
    currency: str
    asked_at: _dt.datetime
    effective_at: _dt.datetime | None  # C3
    expires_at: _dt.datetime | None  # C4
    payment_id: str | None  # C4
    decided_at: _dt.datetime | None
    forfeited_days: int | None
    forfeited_value: int | None
    asked_by: str
    policy_version: str


class ShownChange(PlanChangeRow, Protocol):
    """A pending change as the API shows it, with its payment's client secret (C4, waiting for action)."""

    client_secret: str | None


class WaitingUpgrade(Protocol):
    """A C4 upgrade waiting for the customer's action (`waiting_upgrades_due`)."""

    subscription_id: str
    payment_id: str


_PENDING = select(plan_changes).where(
    plan_changes.c.subscription_id == bindparam("subscription_id"),
    plan_changes.c.status == PlanChangeStatus.PENDING,
    plan_changes.c.kind == bindparam("kind"),
)
_SHOWN_COLUMNS = (
    select(plan_changes, payments.c.client_secret)
    .join(subscriptions, subscriptions.c.id == plan_changes.c.subscription_id)
    .outerjoin(payments, payments.c.id == plan_changes.c.payment_id)
    .where(
        plan_changes.c.status == PlanChangeStatus.PENDING,
        subscriptions.c.status != SubscriptionStatus.CANCELED,  # an ended subscription changes to nothing
    )
)
_SHOWN = _SHOWN_COLUMNS.where(plan_changes.c.subscription_id == bindparam("subscription_id")).order_by(
    plan_changes.c.kind  # 'now' (C4, waiting for action) before 'period_end' (C3)
)
_SHOWN_OF = _SHOWN_COLUMNS.where(plan_changes.c.subscription_id.in_(bindparam("ids", expanding=True))).order_by(
    plan_changes.c.subscription_id,
    plan_changes.c.kind.desc(),  # per subscription, 'now' last: it wins below
)
_GET = select(plan_changes).where(plan_changes.c.id == bindparam("change_id"))
_LOCK_CHANGE_OF_PAYMENT = (
    select(plan_changes).where(plan_changes.c.payment_id == bindparam("payment_id")).with_for_update()
)
# Set-based, for a renewal batch: the pending period-end changes of these subscriptions.
_PENDING_OF = select(plan_changes).where(
    plan_changes.c.subscription_id.in_(bindparam("ids", expanding=True)),
    plan_changes.c.status == PlanChangeStatus.PENDING,
    plan_changes.c.kind == PERIOD_END,
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


async def get(conn: AsyncConnection, change_id: str) -> PlanChangeRow:
    return cast(PlanChangeRow, (await conn.execute(_GET, {"change_id": change_id})).one())


async def pending(conn: AsyncConnection, subscription_id: str, kind: Kind = PERIOD_END) -> PlanChangeRow | None:
    """The subscription's pending change of this kind, or None (at most one: a unique index holds it)."""
    row = (await conn.execute(_PENDING, {"subscription_id": subscription_id, "kind": kind})).first()
    return cast("PlanChangeRow | None", row)


async def shown(conn: AsyncConnection, subscription_id: str) -> ShownChange | None:
    """The pending change the API shows (a C4 upgrade waiting for the customer's action first, with its payment's
    client secret as `client_secret`), or None."""
    return cast("ShownChange | None", (await conn.execute(_SHOWN, {"subscription_id": subscription_id})).first())


async def shown_of(conn: AsyncConnection, subscription_ids: Sequence[str]) -> dict[str, ShownChange]:
    """`shown` for a page of subscriptions, in one statement: the change each shows, by subscription id."""
    if not subscription_ids:
        return {}
    rows = cast("Sequence[ShownChange]", (await conn.execute(_SHOWN_OF, {"ids": list(subscription_ids)})).all())
    return {c.subscription_id: c for c in rows}  # ordered so that a C4 upgrade comes last and wins


async def of_payment(conn: AsyncConnection, payment_id: str) -> PlanChangeRow | None:
    """The C4 change a payment was made for, locked (after its subscription and payment), or None."""
    row = (await conn.execute(_LOCK_CHANGE_OF_PAYMENT, {"payment_id": payment_id})).first()
    return cast("PlanChangeRow | None", row)


async def pending_period_end(conn: AsyncConnection, subscription_ids: list[str]) -> list[PlanChangeRow]:
    if not subscription_ids:
        return []
    return cast("list[PlanChangeRow]", list((await conn.execute(_PENDING_OF, {"ids": subscription_ids})).all()))


async def waiting_upgrades_due(conn: AsyncConnection, now: _dt.datetime, *, limit: int) -> list[WaitingUpgrade]:
    """C4: the upgrades still waiting for the customer's action at their expiry, unlocked (each is then locked as
    every settlement locks: subscription, payment, change)."""
    stmt = (
        select(plan_changes.c.subscription_id, plan_changes.c.payment_id)
        .where(
            plan_changes.c.status == PlanChangeStatus.PENDING,
            plan_changes.c.kind == NOW,
            plan_changes.c.expires_at <= now,
        )
        .order_by(plan_changes.c.subscription_id)
        .limit(limit)
    )
    return cast("list[WaitingUpgrade]", list((await conn.execute(stmt)).all()))


async def add(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(insert(plan_changes).values(row))


async def decide(
    conn: AsyncConnection, ids: list[str], status: PlanChangeStatus, at: _dt.datetime
) -> list[PlanChangeRow]:
    """Mark pending changes applied, withdrawn or expired; returns those that were still pending, as written."""
    if not ids:
        return []
    rows = (await conn.execute(_DECIDE, {"ids": ids, "status": status, "at": at})).all()
    return cast("list[PlanChangeRow]", list(rows))


async def move_to_plans(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """C3/B4: subscriptions moved to their new plans, re-anchored at the period end (`_MOVE_TO_PLAN`)."""
    if rows:
        await conn.execute(_MOVE_TO_PLAN, rows)


async def record_forfeit(conn: AsyncConnection, change_id: str, days: int, value: int) -> None:
    """C4/R1: what the upgrade forfeited of the old period (information: never refunded)."""
    await conn.execute(
        update(plan_changes).where(plan_changes.c.id == change_id).values(forfeited_days=days, forfeited_value=value)
    )
