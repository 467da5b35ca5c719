"""The one clock abstraction. Nothing else in the service reads the time.

`SystemClock` is production time. `SandboxClock` is a test clock kept in the database (so every replica sees the
same time) that only moves when ops move it forward, like Stripe's test clocks.
"""

from __future__ import annotations

import datetime as _dt
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import insert_ignoring_conflict
from app.errors import ClockBackwards
from app.models import sandbox_clock

UTC = _dt.UTC


def utc(value: _dt.datetime) -> _dt.datetime:
    """Normalise an aware datetime to UTC; naive datetimes are refused."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC)


class Clock(Protocol):
    async def now(self, conn: AsyncConnection | None = None) -> _dt.datetime: ...


class SystemClock:
    """Real time."""

    async def now(self, conn: AsyncConnection | None = None) -> _dt.datetime:
        return self.wall()

    @staticmethod
    def wall() -> _dt.datetime:
        return _dt.datetime.now(UTC)


_READ_SANDBOX_NOW = select(sandbox_clock.c.now).where(sandbox_clock.c.id == 1)  # built once: read on every request


class SandboxClock:
    """Frozen business time stored in the database; starts at the real time of its first use."""

    def __init__(self, db) -> None:  # noqa: ANN001 - app.db.Database
        self._db = db

    async def now(self, conn: AsyncConnection | None = None) -> _dt.datetime:
        if conn is not None:
            return await self._read(conn)
        async with self._db.read() as c:
            return await self._read(c)

    async def _read(self, conn: AsyncConnection) -> _dt.datetime:
        value = (await conn.execute(_READ_SANDBOX_NOW)).scalar()
        if value is not None:
            return value
        start = SystemClock.wall()
        await insert_ignoring_conflict(conn, sandbox_clock, {"id": 1, "now": start})
        return (await conn.execute(_READ_SANDBOX_NOW)).scalar_one()

    async def advance_to(self, conn: AsyncConnection, target: _dt.datetime) -> _dt.datetime:
        """Move the clock forward to `target`; moving it back is refused (409 clock_backwards)."""
        target = utc(target)
        current = await self._read(conn)
        result = await conn.execute(
            update(sandbox_clock).where(sandbox_clock.c.id == 1, sandbox_clock.c.now <= target).values(now=target)
        )
        if result.rowcount != 1:
            raise ClockBackwards(f"the sandbox clock is at {current.isoformat()} and never moves back")
        return target
