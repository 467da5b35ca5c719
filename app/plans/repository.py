"""Every query about plans."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import PlanNotFound
from app.models import plans


async def get_by_code(conn: AsyncConnection, code: str, *, active_only: bool = False):
    stmt = select(plans).where(plans.c.code == code)
    if active_only:
        stmt = stmt.where(plans.c.active.is_(True))
    row = (await conn.execute(stmt)).first()
    if row is None:
        raise PlanNotFound(f"no {'active ' if active_only else ''}plan {code!r}")
    return row
