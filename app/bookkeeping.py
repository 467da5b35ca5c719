"""One background worker per app for the idempotency keys' bookkeeping that found the database unreachable (a
release, a settling after a fault, the storing of an answer already sent: app/idempotency.py).

During an outage every failed request with a key leaves such an operation behind. They go into one bounded queue
on the app's context, coalesced per key, and one worker (started when the first arrives, ended when the queue is
empty) tries them in order: the first that still finds the database unreachable ends the pass, and the next pass
waits twice as long (0.5 s up to 5 s), so the returning database meets one connection doing this work, not a task
per failed request. An operation that has failed for as long as a key can be held (`give_up_after`) is dropped:
its key is taken over as abandoned by then. The app's shutdown makes one last, short attempt and then cancels the
worker, before the database is closed."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Hashable

from app.clock import SystemClock
from app.db import unavailable

log = logging.getLogger("billing.idempotency")


class Bookkeeping:
    def __init__(
        self,
        *,
        limit: int = 10_000,
        first_delay: float = 0.5,
        max_delay: float = 5.0,
        give_up_after: float = 600.0,
        last_attempt_seconds: float = 2.0,
    ) -> None:
        self.limit = limit
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.give_up_after = give_up_after
        self.last_attempt_seconds = last_attempt_seconds
        # key -> (operation, its arguments, the monotonic second after which it is dropped); insertion ordered
        self._queue: dict[Hashable, tuple[Callable[..., Awaitable[None]], tuple, float]] = {}
        self._worker: asyncio.Task | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    def submit(self, key: Hashable, operation: Callable[..., Awaitable[None]], *args: object) -> bool:
        """Queue `operation(*args)` until the database lets it through; a later one for the same `key` replaces it.
        False (and logged) when the queue is full or the app is shutting down: the key is then left to expire as
        abandoned."""
        if self._closed or (key not in self._queue and len(self._queue) >= self.limit):
            log.error("idempotency key bookkeeping dropped (queue full or shutting down)", extra={"key": str(key)})
            return False
        self._queue[key] = (operation, args, SystemClock.monotonic() + self.give_up_after)
        if not self.running:
            # A fresh context: the worker's transactions are not the request's (no witness, no request key).
            self._worker = asyncio.get_running_loop().create_task(self._run(), context=contextvars.Context())
        return True

    async def _run(self) -> None:
        delay = self.first_delay
        while self._queue:
            await asyncio.sleep(delay)
            delay = self.first_delay if await self._pass() else min(delay * 2, self.max_delay)

    async def _pass(self) -> bool:
        """Try the queued operations in order. False when the database was still unreachable (the rest wait)."""
        for key in list(self._queue):
            entry = self._queue.get(key)
            if entry is None:
                continue
            operation, args, drop_after = entry
            try:
                await operation(*args)
            except Exception as exc:
                if not unavailable(exc):
                    log.exception("idempotency key bookkeeping failed", exc_info=exc)
                elif SystemClock.monotonic() < drop_after:
                    return False
                else:
                    log.error("idempotency key bookkeeping given up", extra={"key": str(key)})
            if self._queue.get(key) is entry:  # not replaced meanwhile
                del self._queue[key]
        return True

    async def aclose(self) -> None:
        """At shutdown: stop the worker, make one last attempt (bounded), and accept nothing more."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._queue:
            with contextlib.suppress(Exception, TimeoutError):
                async with asyncio.timeout(self.last_attempt_seconds):
                    await self._pass()
            if self._queue:
                log.warning("idempotency key bookkeeping left undone at shutdown", extra={"count": len(self._queue)})
            self._queue.clear()
