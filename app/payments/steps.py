"""The three steps of every use case that moves money, and the one place that says which run outside a transaction.

A purchase, a renewal batch, a retry batch, a refund (asked for, or retried by its job), a B1 correction (a
PaymentIntent cancelled at the gateway) and, later, an upgrade all read as:

1. `reserve`: a unit of work (app/uow.py) writes what is about to happen, with the idempotency key the gateway
   will be given: a pending payment, a pending refund, a lease on the subscription or the mark on a payment. It
   commits before the gateway is called.
2. `call`: the gateway is called OUTSIDE ANY TRANSACTION. A gateway call can take seconds (Stripe, a slow
   network, a timeout); a transaction held open across it would hold its row locks (the subscription, the
   customer, the payment) and a connection for that long, stalling every writer of those rows and the
   connection lane. `call` refuses to run inside a unit of work.
3. `settle`: a second unit of work records the gateway's answer, only while the reservation is still pending
   (state moves forward only: a late webhook or a second replica finds it settled and changes nothing).

A crash between `call` and `settle` (or a lost answer) leaves the reservation pending with its key; it is repaired
by repeating the charge, refund or cancellation with the same idempotency key (a retried request, the renewal,
retry, refund or payment-cancellation job), which the gateway answers with its first result: money never moves
twice. The leases and heartbeats that keep two replicas off the same reservation, and the set-based settlement of
a batch (`charging.settle_many`), live in the steps themselves.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from app.uow import UnitOfWork, in_unit_of_work, unit_of_work

if TYPE_CHECKING:
    from app.context import AppContext

P = ParamSpec("P")
T = TypeVar("T")


async def reserve(
    ctx: AppContext, step: Callable[..., Awaitable[T]], *args: object, now: _dt.datetime | None = None, **kwargs: object
) -> T:
    """Step 1: run `step(uow, *args, **kwargs)` in its own unit of work, committed before the gateway is called."""
    async with unit_of_work(ctx, now=now) as uow:
        return await step(uow, *args, **kwargs)


async def call(operation: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
    """Step 2: call the gateway, never inside a transaction (see the module docstring)."""
    if in_unit_of_work():
        raise RuntimeError("a gateway call must not run inside a unit of work")
    return await operation(*args, **kwargs)


async def settle(
    ctx: AppContext, step: Callable[..., Awaitable[T]], *args: object, now: _dt.datetime | None = None, **kwargs: object
) -> T:
    """Step 3: record the gateway's answer in its own unit of work."""
    async with unit_of_work(ctx, now=now) as uow:
        return await step(uow, *args, **kwargs)


__all__ = ["UnitOfWork", "call", "reserve", "settle"]
