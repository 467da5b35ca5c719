"""The one clock abstraction: nothing else in the service reads the time (no `time.time`, `time.monotonic` or
`datetime.now` outside this module).

Two clocks, both injected through the app context (app/context.py):
- `ctx.clock`, business time (`Clock.now`): `SystemClock` in production; `SandboxClock` in the sandbox, a test clock
  kept in the database (so every replica sees the same time) that only moves when ops move it forward, like
  Stripe's test clocks.
- `ctx.system_clock`, real time for the infrastructure (`SystemClock`): `wall()` for idempotency keys, sessions
  and leases; `monotonic()` for rate limits and grace periods. Tests replace it with one they move forward.
Where no context reaches (`app.ids.new_id`, called from everywhere, with `epoch_ms()`; the bookkeeping worker; the
request durations of app/health/observability.py, with `perf_counter()`) or
where the time must be the real one whatever a test does to `ctx.system_clock` (a cached token's expiry, checked
against the time PyJWT checks it against: app/auth.py), `SystemClock`'s static methods are read directly: still
this module.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import ClockBackwards
from app.sandbox import repository

if TYPE_CHECKING:
    from app.db import Database

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

    # Seconds that never go back (rate limits, grace periods), and the finest-grained ones (durations measured).
    monotonic = staticmethod(time.monotonic)
    perf_counter = staticmethod(time.perf_counter)

    @staticmethod
    def epoch_ms() -> int:
        """Milliseconds since the Unix epoch (the time part of an id)."""
        return time.time_ns() // 1_000_000


class SandboxClock:
    """Frozen business time stored in the database; starts at the real time of its first use."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def now(self, conn: AsyncConnection | None = None) -> _dt.datetime:
        if conn is not None:
            return await self._read(conn)
        async with self._db.read() as c:
            return await self._read(c)

    async def _read(self, conn: AsyncConnection) -> _dt.datetime:
        value = await repository.clock_now(conn)
        if value is not None:
            return value
        return await repository.start_clock(conn, SystemClock.wall())

    async def advance_to(self, conn: AsyncConnection, target: _dt.datetime) -> _dt.datetime:
        """Move the clock forward to `target`; moving it back is refused (409 clock_backwards)."""
        target = utc(target)
        current = await self._read(conn)
        if not await repository.advance_clock(conn, target):
            raise ClockBackwards(f"the sandbox clock is at {current.isoformat()} and never moves back")
        return target
