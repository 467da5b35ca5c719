"""Plan use cases: the catalogue ops maintain, and the demo plans of the embedded default."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from app.audit.service import record
from app.auth import Principal
from app.context import AppContext
from app.errors import PlanExists
from app.ids import new_id
from app.plans import repository
from app.plans.repository import PlanRow
from app.plans.schemas import PlanCreate, PlanUpdate
from app.uow import UnitOfWork, unit_of_work
from policies.states import Interval, Tier

DEMO_PLANS = (
    PlanCreate(
        code="basic-monthly",
        name="Subscription, monthly",
        tier=Tier.SUBSCRIPTION,
        interval=Interval.MONTH,
        amount=999,
        currency="usd",
        trial_available=True,
    ),
    PlanCreate(
        code="basic-yearly",
        name="Subscription, yearly",
        tier=Tier.SUBSCRIPTION,
        interval=Interval.YEAR,
        amount=9990,
        currency="usd",
        trial_available=True,
    ),
    PlanCreate(
        code="enterprise-yearly",
        name="Enterprise, yearly",
        tier=Tier.ENTERPRISE,
        interval=Interval.YEAR,
        amount=120000,
        currency="usd",
        trial_available=False,
    ),
)


def _row(body: PlanCreate, now: _dt.datetime) -> dict[str, Any]:
    return {"id": new_id("plan"), **body.model_dump(), "active": True, "created_at": now, "updated_at": now}


async def create_plan(uow: UnitOfWork, principal: Principal, body: PlanCreate) -> PlanRow:
    conn, now = uow.conn, uow.now
    row = _row(body, now)
    if not await repository.add_once(conn, row):
        raise PlanExists(f"plan code {body.code!r} is already used")
    await record(
        conn,
        principal,
        "plan.created",
        now,
        subject_type="plan",
        subject_id=row["id"],
        customer_id=None,
        data={"code": body.code, "amount": body.amount, "currency": body.currency},
    )
    return await repository.get_by_code(conn, body.code)


async def update_plan(uow: UnitOfWork, principal: Principal, code: str, body: PlanUpdate) -> PlanRow:
    """B3: changing the list price touches the plan only; subscriptions keep the price they were bought at."""
    conn, now = uow.conn, uow.now
    current = await repository.get_by_code(conn, code)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if getattr(current, k) != v}
    if not changes:
        return current
    await repository.change(conn, current.id, changes, now)
    await record(
        conn,
        principal,
        "plan.updated",
        now,
        subject_type="plan",
        subject_id=current.id,
        customer_id=None,
        data={"before": {k: getattr(current, k) for k in changes}, "after": changes},
    )
    return await repository.get_by_code(conn, code)


async def seed_demo_plans(ctx: AppContext) -> None:
    """The embedded default's catalogue; plans that exist already are left as they are."""
    async with unit_of_work(ctx) as uow:
        conn, now = uow.conn, uow.now
        for body in DEMO_PLANS:
            await repository.add_once(conn, _row(body, now))
