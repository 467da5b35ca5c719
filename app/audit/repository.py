"""The audit log's statements (table `audit_events`) and the domain events' appends (table `events`): appends
only, and the ops list. The appends are one statement object each, built once: rows travel as parameters, so
neither the construct nor its cache key is rebuilt per event (`insert(...).values(row)` would build both each
time).

`append_change` writes what one change records (its notices, its audit row, its domain events) in ONE statement on
PostgreSQL, a data-modifying CTE (`WITH n AS (INSERT INTO notices ...), a AS (INSERT INTO audit_events ...) INSERT
INTO events ...`): one round trip instead of one per table. SQLite has no data-modifying CTE: one statement per
table there. The statement is built once per shape (the tables and the columns given), its rows as parameters."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Insert, bindparam, insert, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import insert_ignoring_conflict
from app.models import audit_events, events, notices
from app.pagination import PageParams, fetch_page

_APPEND = insert(audit_events)
_APPEND_EVENTS = insert(events)


async def append(conn: AsyncConnection, rows: dict[str, Any] | Sequence[dict[str, Any]]) -> None:
    """One audit row, or a batch of them in one multi-row insert."""
    await conn.execute(_APPEND, rows)


async def append_events(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Domain event rows (app/audit/service.py `event_row`), in one insert."""
    await conn.execute(_APPEND_EVENTS, rows)


# One part of a change's statement: the table and the columns given (in order); notices are written at most once
# per `dedupe_key`.
_Part = tuple[str, tuple[str, ...]]
_TABLES = {table.name: table for table in (notices, audit_events, events)}


@functools.cache
def _change_statement(parts: tuple[_Part, ...]) -> Insert:
    """PostgreSQL: the inserts of `parts` as one statement, every one but the last a data-modifying CTE (each runs
    once, to completion, whether or not the main statement reads it). Part i's values are bound as `p{i}_<column>`."""
    inserts = []
    for i, (name, columns) in enumerate(parts):
        table = _TABLES[name]
        stmt = postgresql.insert(table).values(
            {column: bindparam(f"p{i}_{column}", type_=table.c[column].type) for column in columns}
        )
        if table is notices:
            stmt = stmt.on_conflict_do_nothing(index_elements=["dedupe_key"])
        inserts.append(stmt)
    main = inserts.pop()
    return main.add_cte(*(stmt.cte(f"w{i}") for i, stmt in enumerate(inserts))) if inserts else main


async def append_change(
    conn: AsyncConnection,
    row: Mapping[str, Any],
    event_rows: Sequence[Mapping[str, Any]] = (),
    notice_rows: Sequence[Mapping[str, Any]] = (),
) -> None:
    """What one change records, in the caller's transaction: its notices (each at most once per `dedupe_key`), its
    audit row and its domain events. One statement on PostgreSQL; one per table on SQLite."""
    if conn.dialect.name != "postgresql":
        if notice_rows:
            rows = [dict(notice) for notice in notice_rows]
            await insert_ignoring_conflict(
                conn, notices, rows[0] if len(rows) == 1 else rows, conflict_on=["dedupe_key"]
            )
        await conn.execute(_APPEND, dict(row))
        if event_rows:
            await conn.execute(_APPEND_EVENTS, [dict(event) for event in event_rows])
        return
    ordered = [
        *((notices.name, notice) for notice in notice_rows),
        (audit_events.name, row),
        *((events.name, event) for event in event_rows),
    ]
    parts = tuple((name, tuple(values)) for name, values in ordered)
    params = {f"p{i}_{column}": value for i, (_name, values) in enumerate(ordered) for column, value in values.items()}
    await conn.execute(_change_statement(parts), params)


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
