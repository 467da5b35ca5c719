"""A database fault is an answer, never a dropped connection: when the database cannot be reached or a connection
to it is lost mid-request (a failover, a pooler or server restart), the request is answered 503
`database_unavailable` with `Retry-After` instead of escaping the app as an exception (which the server answers
500, or not at all by closing the connection).

A read (GET, HEAD: nothing to repeat twice) that meets a lost connection is run once more before that: the lane
closed the dead connection, and its idle ones, when the error surfaced (app/db.py), so the retry opens fresh ones
and the client never notices. A write is not repeated here (it might have committed); its client repeats it with
its Idempotency-Key (app/idempotency.py frees the key when nothing was committed).

A pure ASGI middleware just outside the idempotency middleware, so a fault in the key's own statements is answered
the same way."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.db import unavailable
from app.http import problem_response

RETRY_AFTER_SECONDS = 1
_READS = frozenset({"GET", "HEAD"})
log = logging.getLogger("billing.db")


class DatabaseFaultMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        attempts = 2 if scope["method"] in _READS else 1
        started = finished = False

        async def tracked(message: Message) -> None:
            nonlocal started, finished
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            await send(message)

        for attempt in range(1, attempts + 1):
            try:
                return await self.app(scope, receive if attempt == 1 else _no_body(receive), tracked)
            except Exception as exc:
                if not unavailable(exc):
                    raise  # a bug: 500
                if finished:  # the client has its whole answer; nothing left to tell it
                    log.warning("database unavailable after the response", extra={"error": type(exc).__name__})
                    return None
                if started:
                    raise  # too late to answer anything else: the server ends the connection
                if attempt < attempts:
                    log.warning(
                        "database connection lost during a read; retrying once", extra={"error": type(exc).__name__}
                    )
                    continue
                log.warning("database unavailable", extra={"error": type(exc).__name__})
        response = problem_response(
            "database_unavailable", "the database cannot be reached; retry shortly", retry_after=RETRY_AFTER_SECONDS
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        await response(scope, receive, tracked)
        return None


def _no_body(receive: Receive) -> Receive:
    """A read's request again: its (empty) body once more, then the connection's own messages."""
    given = False

    async def again() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return await receive()

    return again
