"""Everything a request or a job needs, built once at start-up and injected (no module globals: the one
module-level state left is `app.ids`' last id, which keeps ids increasing within the process)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from app.auth import Tokens
from app.bookkeeping import Bookkeeping
from app.clock import Clock, SystemClock
from app.config import Settings
from app.db import Database
from app.gateways.base import PaymentGateway
from app.health.observability import Metrics
from app.notices.mailer import Mailer
from policies import PolicyBook


class Shutdown:
    """The process was asked to stop (SIGTERM, SIGINT): scheduled work claims nothing new (checked between jobs and
    between batches), and the batch in flight has BILLING_SHUTDOWN_GRACE_SECONDS from the request (`remaining`) to
    finish. `in_flight` says what is running, for the log line when the grace period runs out and it is cut off."""

    def __init__(self, monotonic: Callable[[], float] = SystemClock.monotonic) -> None:
        self._monotonic = monotonic
        self.requested_at: float | None = None  # monotonic seconds of the first request to stop
        self.forced = False  # a second request (Ctrl-C twice): the grace period ends at once
        self._work: dict[int, str] = {}

    def request(self) -> None:
        if self.requested_at is None:
            self.requested_at = self._monotonic()

    def on_signal(self) -> None:
        """SIGTERM/SIGINT: the first requests the stop, a second one ends the grace period at once. Safe in a
        signal handler (attributes set, nothing awaited)."""
        if self.requested_at is None:
            self.request()
        else:
            self.forced = True

    @property
    def requested(self) -> bool:
        return self.requested_at is not None

    def remaining(self, grace_seconds: float) -> float:
        """Seconds left of the grace period counted from the request to stop (all of it before one)."""
        if self.requested_at is None:
            return grace_seconds
        if self.forced:
            return 0.0
        return max(0.0, self.requested_at + grace_seconds - self._monotonic())

    def begin(self, what: str) -> object:
        """Note work in progress until `end(token)`."""
        token = object()
        self._work[id(token)] = what
        return token

    def end(self, token: object) -> None:
        self._work.pop(id(token), None)

    @contextlib.contextmanager
    def working_on(self, what: str) -> Iterator[None]:
        token = self.begin(what)
        try:
            yield
        finally:
            self.end(token)

    def in_flight(self) -> list[str]:
        return list(self._work.values())


@dataclass
class AppContext:
    settings: Settings
    db: Database
    clock: Clock  # business time: SystemClock in production, SandboxClock in the sandbox
    system_clock: SystemClock  # real time, for infrastructure (idempotency expiry, token minting)
    policies: PolicyBook
    metrics: Metrics
    mailer: Mailer
    gateway: PaymentGateway
    tokens: Tokens  # bearer tokens verified recently (app/auth.py), for this app's secret
    shutdown: Shutdown = field(default_factory=Shutdown)
    # the idempotency keys' bookkeeping retried in the background (one worker: app/bookkeeping.py)
    bookkeeping: Bookkeeping = field(default_factory=Bookkeeping)


async def get_ctx(request: Request) -> AppContext:  # async: no thread-pool hop per request
    return request.app.state.ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]
