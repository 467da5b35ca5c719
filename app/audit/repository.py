"""The audit log's statements (table `audit_events`) and the domain events' appends (table `events`): appends
only, and the ops list. The appends are one statement object each, built once: rows travel as parameters, so
neither the construct nor its cache key is rebuilt per event (`insert(...).values(row)` would build both each
time)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import audit_events, events
from app.pagination import PageParams, fetch_page

_APPEND = insert(audit_events)
_APPEND_EVENTS = insert(events)


async def append(conn: AsyncConnection, rows: dict[str, Any] | Sequence[dict[str, Any]]) -> None:
    """One audit row, or a batch of them in one multi-row insert."""
    await conn.execute(_APPEND, rows)


async def append_events(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Domain event rows (app/audit/service.py `event_row`), in one insert."""
    await conn.execute(_APPEND_EVENTS, rows)


async def page(
    conn: AsyncConnection,
    params: PageParams,
    *,
    customer_id: str | None = None,
    action: str | None = None,
    subject_id: str | None = None,
    actor: str | None = None,
) -> tuple[Sequence[Any], bool]:
    """A page of audit rows, newest first, matching every filter given."""
    stmt = select(audit_events)
    for column, value in (
        (audit_events.c.customer_id, customer_id),
        (audit_events.c.action, action),
        (audit_events.c.subject_id, subject_id),
        (audit_events.c.actor, actor),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    return await fetch_page(conn, stmt, audit_events.c.id, params)
