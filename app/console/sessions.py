"""The ops console's sessions, kept on the server (table `console_sessions`).

Signing in creates a row and gives the browser a random session id (256 bits); the table keeps only its SHA-256,
so a copy of the table opens no session. A session records the staff member (the token's `sub`) and role, and
ends at the first of: sign-out (the row is deleted, so every copy of the cookie stops working),
`console_session_idle_minutes` without a request, `console_session_hours` after signing in, the expiry of the
token pasted to sign in, or `billing console-sessions revoke --staff ID`.

Times are the injected wall clock (`ctx.system_clock.wall()`): infrastructure time, not the sandbox's business
clock. Per request: one primary-key read; `last_seen_at` is written at most once a minute (TOUCH_EVERY), so the
idle timeout is exact to within that minute.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

from app.auth import Principal
from app.console import repository
from app.context import AppContext

TOUCH_EVERY = _dt.timedelta(minutes=1)


@dataclass(frozen=True)
class Opened:
    principal: Principal
    id_hash: str


def hash_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()


def session_state(
    last_seen_at: _dt.datetime, expires_at: _dt.datetime, now: _dt.datetime, idle: _dt.timedelta
) -> Literal["live", "touch", "expired"]:
    """What a request finds (pure; `now` passed in): `expired` past the absolute end or after `idle` without a
    request; `touch` when live and `last_seen_at` is a minute old or more (write it); `live` otherwise."""
    if now >= expires_at or now - last_seen_at >= idle:
        return "expired"
    return "touch" if now - last_seen_at >= TOUCH_EVERY else "live"


async def open_session(
    ctx: AppContext, principal: Principal, token_expires_at: _dt.datetime | None, replaces: str | None = None
) -> str:
    """A new session for `principal`; returns the id for the cookie (never stored). The browser's previous session,
    if any (`replaces`, its id), ends: signing in always starts a fresh id. Sessions already over are purged."""
    now = ctx.system_clock.wall()
    expires_at = now + _dt.timedelta(hours=ctx.settings.console_session_hours)
    if token_expires_at is not None:
        expires_at = min(expires_at, token_expires_at)
    idle = _dt.timedelta(minutes=ctx.settings.console_session_idle_minutes)
    session_id = secrets.token_urlsafe(32)
    row = {
        "id_hash": hash_id(session_id),
        "staff": principal.sub,
        "role": principal.role,
        "created_at": now,
        "last_seen_at": now,
        "expires_at": expires_at,
    }
    async with ctx.db.transaction() as conn:
        await repository.open_session(conn, row, now, idle, hash_id(replaces) if replaces else None)
    return session_id


async def find_session(ctx: AppContext, session_id: str) -> Opened | None:
    """The live session of this id, or None (unknown, signed out, revoked, idle too long, or over)."""
    id_hash = hash_id(session_id)
    now = ctx.system_clock.wall()
    idle = _dt.timedelta(minutes=ctx.settings.console_session_idle_minutes)
    async with ctx.db.read() as conn:
        row = await repository.session(conn, id_hash)
        if row is None:
            return None
        state = session_state(row.last_seen_at, row.expires_at, now, idle)
        if state == "expired":
            await repository.end(conn, id_hash)
            return None
        if state == "touch":
            await repository.touch(conn, id_hash, now)
    return Opened(Principal(row.staff, row.role), id_hash)


async def end_session(ctx: AppContext, id_hash: str) -> None:
    async with ctx.db.autocommit() as conn:
        await repository.end(conn, id_hash)


async def revoke_staff(ctx: AppContext, staff: str) -> int:
    """End every console session of one staff member at once; the number ended."""
    async with ctx.db.autocommit() as conn:
        return await repository.end_all_of(conn, staff)
