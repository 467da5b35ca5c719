"""Rate limits on writes (POST, PATCH, DELETE) per caller: a token bucket per verified token subject, in each
process (with several replicas the limit applies per replica). Over the limit: 429 `rate_limited` with
`Retry-After`. Configured by BILLING_RATE_LIMIT_WRITES_PER_MINUTE (0 turns it off)."""

from __future__ import annotations

import math
from collections import OrderedDict

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.clock import SystemClock
from app.errors import Unauthenticated
from app.http import problem_response

WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})
MAX_CALLERS = 100_000  # buckets kept; the least recently used are dropped past this


class TokenBuckets:
    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, caller: str, now: float) -> float:
        """0 if the caller may write now (and a token is spent), else the seconds until it may."""
        tokens, last = self._buckets.pop(caller, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[caller] = (tokens - 1 if wait == 0 else tokens, now)
        if len(self._buckets) > MAX_CALLERS:
            self._buckets.popitem(last=False)
        return wait


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, per_minute: int, clock: SystemClock) -> None:
        self.app = app
        self.buckets = TokenBuckets(per_minute)
        self.clock = clock  # the app's system clock (its monotonic seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITES:
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        try:
            principal = scope["app"].state.ctx.tokens.verify(headers.get("authorization"))
        except Unauthenticated:
            return await self.app(scope, receive, send)  # unauthenticated writes are refused by the route (401)
        scope.setdefault("state", {})["principal"] = principal  # verified once per request
        wait = self.buckets.take(principal.caller_key, self.clock.monotonic())
        if wait > 0:
            retry = max(1, math.ceil(wait))
            response = problem_response("rate_limited", f"too many writes; retry in {retry} s")
            response.headers["Retry-After"] = str(retry)
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)
