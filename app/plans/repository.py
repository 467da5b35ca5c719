"""Every statement about plans."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, cast

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import insert_ignoring_conflict
from app.errors import PlanNotFound
from app.models import plans
from app.pagination import PageParams, fetch_page


class PlanRow(Protocol):
    """A row of `plans` (app/models/core.py)."""

    id: str
    code: str
    name: str
    tier: str  # Tier
    interval: str  # Interval
    amount: int
    currency: str
    trial_available: bool
    active: bool
    created_at: _dt.datetime
    updated_at: _dt.datetime


async def get_by_code(conn: AsyncConnection, code: str, *, active_only: bool = False) -> PlanRow:
    stmt = select(plans).where(plans.c.code == code)
    if active_only:
        stmt = stmt.where(plans.c.active.is_(True))
    row = (await conn.execute(stmt)).first()
    if row is None:
        raise PlanNotFound(f"no {'active ' if active_only else ''}plan {code!r}")
    return row


async def find_by_code(conn: AsyncConnection, code: str) -> PlanRow | None:
    """The plan of this code, active or not, or None."""
    return cast("PlanRow | None", (await conn.execute(select(plans).where(plans.c.code == code))).first())


async def names(conn: AsyncConnection, plan_ids: Iterable[str]) -> dict[str, str]:
    """The names of these plans, by id."""
    stmt = select(plans.c.id, plans.c.name).where(plans.c.id.in_(set(plan_ids)))
    return {row.id: row.name for row in (await conn.execute(stmt)).all()}


async def all_active(conn: AsyncConnection) -> list[PlanRow]:
    """Every plan on offer, by code (the ops console's choice of plans to change to)."""
    stmt = select(plans).where(plans.c.active.is_(True)).order_by(plans.c.code)
    return cast("list[PlanRow]", list((await conn.execute(stmt)).all()))


async def page_of_active(conn: AsyncConnection, params: PageParams) -> tuple[Sequence[PlanRow], bool]:
    """One page of the plans on offer, newest first, and whether there are more."""
    return await fetch_page(conn, select(plans).where(plans.c.active.is_(True)), plans.c.id, params)


async def add_once(conn: AsyncConnection, row: Mapping[str, Any]) -> bool:
    """Write the plan unless its code is used already; whether it was written."""
    return await insert_ignoring_conflict(conn, plans, dict(row), conflict_on=["code"]) == 1


async def change(conn: AsyncConnection, plan_id: str, changes: Mapping[str, Any], now: _dt.datetime) -> None:
    await conn.execute(update(plans).where(plans.c.id == plan_id).values(**changes, updated_at=now))
