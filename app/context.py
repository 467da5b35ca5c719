"""Everything a request or a job needs, built once at start-up and injected (no module globals)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.clock import Clock, SystemClock
from app.config import Settings
from app.db import Database
from app.gateways.base import PaymentGateway
from app.notices.mailer import Mailer
from app.ops.observability import Metrics
from policies import PolicyBook


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


async def get_ctx(request: Request) -> AppContext:  # async: no thread-pool hop per request
    return request.app.state.ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]
