"""Reads of the domain events (table `events`; they are appended with their audit rows: app/audit/repository.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import events
from app.pagination import PageParams, fetch_page


async def page(
    conn: AsyncConnection, params: PageParams, *, type_: str | None = None, customer_id: str | None = None
) -> tuple[Sequence[Any], bool]:
    """A page of events, newest first, of this type and customer when given."""
    stmt = select(events)
    if type_ is not None:
        stmt = stmt.where(events.c.type == type_)
    if customer_id is not None:
        stmt = stmt.where(events.c.customer_id == customer_id)
    return await fetch_page(conn, stmt, events.c.id, params)


async def get(conn: AsyncConnection, event_id: str) -> Any:
    """The event, or None."""
    return (await conn.execute(select(events).where(events.c.id == event_id))).first()
