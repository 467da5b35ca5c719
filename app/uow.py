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

A request with an `Idempotency-Key` to a route that only touches the database hands its key to the request's
first unit of work (app/idempotency.py, `idempotency_claim`): the key's row, with the response the route gives
`uow.respond`, is the unit's last statement before the COMMIT (one round trip for both). The claim, the change
and the stored response commit together, or none of them does: a key found there already rolls the unit back.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

if TYPE_CHECKING:
    from app.context import AppContext

R = TypeVar("R", bound=Response)

# How many units of work this task has open (0 or 1): app/payments/steps.py refuses a gateway call inside one.
_open: contextvars.ContextVar[int] = contextvars.ContextVar("open_units_of_work", default=0)


class KeyClaim(Protocol):
    """An `Idempotency-Key` waiting to be taken by the request's first unit of work (app/idempotency.py)."""

    held: bool  # a unit of work holds it (the request's first)
    taken: bool
    committed: bool

    def respond(self, response: Response) -> None: ...  # the response to store with it
    async def store(self, conn: AsyncConnection) -> None: ...  # the unit's last statement: the key, its response


# Set by app/idempotency.py for a route marked `idempotent_in_unit_of_work`; unset (None) for every other request.
idempotency_claim: contextvars.ContextVar[KeyClaim | None] = contextvars.ContextVar("idempotency_claim", default=None)


class UnitOfWork:
    """One transaction of a use case: its connection, its context and its business time."""

    __slots__ = ("_after_commit", "_claim", "conn", "ctx", "now")

    def __init__(
        self, ctx: AppContext, conn: AsyncConnection, now: _dt.datetime, claim: KeyClaim | None = None
    ) -> None:
        self.ctx = ctx
        self.conn = conn
        self.now = now
        self._claim = claim
        self._after_commit: list[Callable[[], Awaitable[object]]] = []

    def respond(self, response: R) -> R:
        """The route's response, stored with the request's `Idempotency-Key` in this unit (when it holds one)."""
        if self._claim is not None:
            self._claim.respond(response)
        return response

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
    claim = idempotency_claim.get()
    if claim is not None and claim.held:  # the request's first unit holds it
        claim = None
    token = _open.set(_open.get() + 1)
    try:
        async with ctx.db.transaction() as conn:
            if claim is not None:
                claim.held = True
            uow = UnitOfWork(ctx, conn, now if now is not None else await ctx.clock.now(conn), claim)
            yield uow
            if claim is not None:
                # Last, with the response: a key there already (a duplicate, committed or still running) raises
                # here and the unit rolls back everything it did; the unique key serialises duplicates.
                await claim.store(conn)
    finally:
        _open.reset(token)
    if claim is not None:
        claim.committed = True
    for operation in uow._after_commit:
        await operation()
