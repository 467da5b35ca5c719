"""The unit of work: one transaction, opened by the edge, that a use case runs in.

The edge (a route, a console handler, a CLI command, a scheduled job) opens it; the use case receives it and
never opens a transaction itself:

    async with unit_of_work(ctx) as uow:
        row = await service.resume(uow, caller, subscription_id)

It holds the transaction's connection (`uow.conn`), the injected context (`uow.ctx`: settings, policies, clocks,
gateway) and the business time of the unit (`uow.now`), read once from the injected clock inside the transaction
(or given by the caller: a scheduled job runs at the time it was scheduled for). It commits once, when the block
ends without an error, and rolls back on any error. Work that must wait until the change has committed (a call to
the gateway, say) is registered with `uow.after_commit` and run by the edge after the COMMIT, outside any
transaction; it is dropped on a rollback.

Reads that need no transaction do not open one: they use `ctx.db.read()`, the autocommit lane, with no
BEGIN/COMMIT round trips. Use cases that move money run as three steps, each step its own unit of work but the
gateway call (app/payments/steps.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from app.context import AppContext

# How many units of work this task has open (0 or 1): app/payments/steps.py refuses a gateway call inside one.
_open: contextvars.ContextVar[int] = contextvars.ContextVar("open_units_of_work", default=0)


class UnitOfWork:
    """One transaction of a use case: its connection, its context and its business time."""

    __slots__ = ("_after_commit", "conn", "ctx", "now")

    def __init__(self, ctx: AppContext, conn: AsyncConnection, now: _dt.datetime) -> None:
        self.ctx = ctx
        self.conn = conn
        self.now = now
        self._after_commit: list[Callable[[], Awaitable[object]]] = []

    def wall(self) -> _dt.datetime:
        """Real time, for infrastructure (leases, expiry marks), not business time."""
        return self.ctx.system_clock.wall()

    def after_commit(self, operation: Callable[..., Awaitable[object]], *args: object, **kwargs: object) -> None:
        """Run `operation(*args, **kwargs)` once this unit has committed, outside any transaction (not at all if
        it rolls back)."""
        self._after_commit.append(lambda: operation(*args, **kwargs))


def in_unit_of_work() -> bool:
    """Whether the running task holds a unit of work (a transaction) open."""
    return _open.get() > 0


@contextlib.asynccontextmanager
async def unit_of_work(ctx: AppContext, *, now: _dt.datetime | None = None) -> AsyncIterator[UnitOfWork]:
    """Open a unit of work: a transaction, committed once when the block ends without an error, rolled back
    otherwise; then the work registered with `after_commit`, in order. `now`: the unit's business time when the
    caller has it already (a scheduled job); otherwise read from the injected clock inside the transaction."""
    token = _open.set(_open.get() + 1)
    try:
        async with ctx.db.transaction() as conn:
            uow = UnitOfWork(ctx, conn, now if now is not None else await ctx.clock.now(conn))
            yield uow
    finally:
        _open.reset(token)
    for operation in uow._after_commit:  # noqa: SLF001 - the edge runs what the use case left for after COMMIT
        await operation()
