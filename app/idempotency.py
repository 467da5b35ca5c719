"""`Idempotency-Key` on POST: the same key and body replay the first response; a different body is 422
`idempotency_key_reused` (the same body: the same JSON, whatever its whitespace, key order or escapes; a body
that is not JSON byte for byte); a key whose first request is still running is 409 `idempotency_key_in_use`.
Keys are stored per caller (role and `sub` of the verified token) and kept at least 24 hours.

A pure ASGI middleware, so the response is captured exactly as sent. Unexpected errors (500 or an exception), an
unreachable gateway (503) and transient refusals (with `Retry-After`, e.g. 409 `charge_in_progress`) release the key
before the answer leaves: our transactions rolled back or changed nothing, and every money movement carries its own
gateway idempotency key, so the retry is safe. Every other answer is kept and replayed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib

import orjson
from sqlalchemy import bindparam, delete, select, update
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import verify_token
from app.db import insert_ignoring_conflict
from app.errors import Unauthenticated
from app.http import problem_response
from app.models import idempotency_keys as keys

MAX_KEY_LENGTH = 255
# A request that has held its key this long without finishing died with its process: the key may be taken over.
ABANDONED_AFTER = _dt.timedelta(minutes=10)
_REPLAYED_HEADERS = ("content-type", "location")
_COMPLETE = update(keys).where(keys.c.caller == bindparam("b_caller"), keys.c.key == bindparam("b_key")).values(
    status="completed", response_status=bindparam("b_status"), response_headers=bindparam("b_headers"),
    response_body=bindparam("b_body"))


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        key = headers.get("idempotency-key")
        if key is None:
            return await self.app(scope, receive, send)
        if not key or len(key) > MAX_KEY_LENGTH:
            return await problem_response(
                "validation_error", f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters",
                errors=[{"field": "Idempotency-Key", "location": "header", "message": "invalid length"}],
            )(scope, receive, send)
        ctx = scope["app"].state.ctx
        principal = scope.get("state", {}).get("principal")  # verified already by the rate limiter
        if principal is None:
            try:
                principal = verify_token(ctx.settings.auth_secret, headers.get("authorization"))
            except Unauthenticated:
                return await self.app(scope, receive, send)  # the route answers 401; nothing is stored
            scope.setdefault("state", {})["principal"] = principal

        body = await _read_body(receive)
        fingerprint, legacy = _fingerprints(scope, body)
        caller = principal.caller_key

        refusal = await _claim(ctx, caller, key, fingerprint, legacy)
        if refusal is not None:
            return await refusal(scope, receive, send)

        captured: dict = {"status": 500, "headers": [], "body": bytearray(), "released": False}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = message.get("headers", [])
                if _releases(message["status"], captured["headers"]):
                    # Freed before the client hears back, so the retry it makes at once finds the key free.
                    await _release(ctx, caller, key)
                    captured["released"] = True
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")
            await send(message)

        sent = False

        async def replay_body() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        try:
            await self.app(scope, replay_body, capture)
        except BaseException:
            if not captured["released"]:
                await _release(ctx, caller, key)
            raise
        if captured["released"]:
            return
        kept = {k.decode("latin-1"): v.decode("latin-1") for k, v in captured["headers"]
                if k.decode("latin-1").lower() in _REPLAYED_HEADERS}
        async with ctx.db.autocommit() as conn:  # one statement: no transaction round trips
            await conn.execute(_COMPLETE, {"b_caller": caller, "b_key": key, "b_status": captured["status"],
                                           "b_headers": kept, "b_body": bytes(captured["body"])})


def _canonical(body: bytes) -> bytes:
    """A JSON body re-serialised with sorted keys and no whitespace, so that the same JSON written otherwise (spaces,
    key order, escapes) is the same request; a body that is not JSON (or too deep to re-serialise) as it is.
    Measured (a subscription body): the fingerprint took 1.6 µs from raw bytes, 2.5 µs (already canonical) to
    4.7 µs (spaced: two hashes) with this, on a request of about a millisecond."""
    if not body:
        return body
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return body


def _fingerprints(scope: Scope, body: bytes) -> tuple[str, str | None]:
    """The request's fingerprint (method, path, query and canonical body), and, when the body is not already in
    canonical form, the fingerprint of its raw bytes, which the release before canonical bodies stored: a key
    recorded by it is still replayed for the same request, byte for byte, until it expires (24 h); the same JSON
    written otherwise is refused with it, as it was then. Nothing stored by this release can match a raw-bytes
    fingerprint it should not: the raw bytes of a request equal another's canonical form only if both requests
    have the same canonical form."""
    digest = hashlib.sha256()
    for part in (scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1")):
        digest.update(part.encode() + b"\0")
    canonical = _canonical(body)
    raw = None
    if canonical != body:
        raw = digest.copy()
        raw.update(body)
    digest.update(canonical)
    return digest.hexdigest(), None if raw is None else raw.hexdigest()


def _releases(status: int, headers: list) -> bool:
    """An answer that leaves the key free for a retry: an unexpected error (500: our transaction rolled back), the
    gateway unreachable (503: nothing assumed to have happened, the retry repeats the gateway call with its own
    key), or a transient refusal that says when to try again (Retry-After, e.g. 409 `charge_in_progress`). Any
    other answer, 502 `refund_failed` included (a refusal that was recorded), is kept and replayed."""
    return status in (500, 503) or any(k.lower() == b"retry-after" for k, _v in headers)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _claim(ctx, caller: str, key: str, fingerprint: str, legacy: str | None = None):  # noqa: ANN001
    """Take the key for this request, or return the response that refuses or replays it. `legacy`: the request's
    raw-bytes fingerprint, as the release before canonical bodies stored it (see `_fingerprints`)."""
    now = ctx.system_clock.wall()
    fresh = {"caller": caller, "key": key, "request_hash": fingerprint, "status": "in_progress", "created_at": now,
             "expires_at": now + _dt.timedelta(hours=ctx.settings.idempotency_ttl_hours), "response_status": None,
             "response_headers": None, "response_body": None}
    while True:
        async with ctx.db.autocommit() as conn:
            if await insert_ignoring_conflict(conn, keys, fresh) == 1:
                return None  # the usual case: a new key, one statement, no transaction round trips
        async with ctx.db.transaction() as conn:
            row = (await conn.execute(select(keys).where(keys.c.caller == caller, keys.c.key == key)
                                      .with_for_update())).first()
            if row is None:
                continue  # released or purged since the insert found it: claim it again
            if row.expires_at <= now:  # a key past its retention is a new key
                await conn.execute(update(keys).where(keys.c.caller == caller, keys.c.key == key).values(**fresh))
                return None
            if row.request_hash != fingerprint and (legacy is None or row.request_hash != legacy):
                return problem_response("idempotency_key_reused",
                                        "this Idempotency-Key was used with a different request")
            if row.status == "in_progress":
                if now - row.created_at < ABANDONED_AFTER:
                    return problem_response("idempotency_key_in_use",
                                            "the first request with this key is still running")
                await conn.execute(update(keys).where(keys.c.caller == caller, keys.c.key == key)
                                   .values(created_at=now))
                return None
            break
    response = Response(row.response_body, status_code=row.response_status, headers=row.response_headers or {})
    response.headers["Idempotent-Replayed"] = "true"
    return response


async def _release(ctx, caller: str, key: str) -> None:  # noqa: ANN001
    async with ctx.db.autocommit() as conn:
        await conn.execute(delete(keys).where(keys.c.caller == caller, keys.c.key == key,
                                              keys.c.status == "in_progress"))


async def purge_expired_keys(ctx, now: _dt.datetime) -> int:  # noqa: ANN001
    """Scheduled job: drop keys past their retention (real time, not the sandbox clock), one batch per call."""
    wall = ctx.system_clock.wall()
    async with ctx.db.transaction() as conn:
        expired = (await conn.execute(
            select(keys.c.caller, keys.c.key).where(keys.c.expires_at <= wall).limit(ctx.settings.job_batch_size)
        )).all()
        for caller, key in expired:
            await conn.execute(delete(keys).where(keys.c.caller == caller, keys.c.key == key))
    return len(expired)
