"""The ops console's own records: its sessions (table `console_sessions`, app/console/sessions.py) and its forms'
one-time nonces (kept with the API's Idempotency-Keys: app/console/service.py `use_once`). The per-request
session read is built once, at import."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Literal, Protocol

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import insert_ignoring_conflict
from app.models import console_sessions, idempotency_keys


class SessionRow(Protocol):
    staff: str
    role: Literal["customer", "ops"]  # app.auth.ROLES
    last_seen_at: _dt.datetime
    expires_at: _dt.datetime


_BY_HASH = select(
    console_sessions.c.staff, console_sessions.c.role, console_sessions.c.last_seen_at, console_sessions.c.expires_at
)


async def open_session(
    conn: AsyncConnection, row: dict[str, Any], now: _dt.datetime, idle: _dt.timedelta, replaces: str | None
) -> None:
    """Insert the session `row`, first deleting every session over at `now` (or idle for `idle`) and the one whose
    id hash is `replaces`."""
    stale = or_(console_sessions.c.expires_at <= now, console_sessions.c.last_seen_at <= now - idle)
    if replaces:
        stale = or_(stale, console_sessions.c.id_hash == replaces)
    await conn.execute(delete(console_sessions).where(stale))
    await conn.execute(console_sessions.insert().values(row))


async def session(conn: AsyncConnection, id_hash: str) -> SessionRow | None:
    row: SessionRow | None = (await conn.execute(_BY_HASH.where(console_sessions.c.id_hash == id_hash))).first()
    return row


async def touch(conn: AsyncConnection, id_hash: str, now: _dt.datetime) -> None:
    """The session seen at `now` (unless a later request recorded a later time)."""
    await conn.execute(
        update(console_sessions)
        .where(console_sessions.c.id_hash == id_hash, console_sessions.c.last_seen_at < now)
        .values(last_seen_at=now)
    )


async def end(conn: AsyncConnection, id_hash: str) -> None:
    await conn.execute(delete(console_sessions).where(console_sessions.c.id_hash == id_hash))


async def end_all_of(conn: AsyncConnection, staff: str) -> int:
    """Delete every session of one staff member: how many."""
    result = await conn.execute(delete(console_sessions).where(console_sessions.c.staff == staff))
    ended: int = result.rowcount
    return ended


async def spend_nonce(conn: AsyncConnection, row: dict[str, Any]) -> bool:
    """Record a form's nonce (an `idempotency_keys` row); False if it was spent already."""
    return await insert_ignoring_conflict(conn, idempotency_keys, row) == 1
