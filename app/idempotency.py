"""`Idempotency-Key` on POST: the same key and body replay the first response; a different body is 422
`idempotency_key_reused` (the same body: the same JSON, whatever its whitespace, key order or escapes; a body
that is not JSON byte for byte); a key whose first request is still running is 409 `idempotency_key_in_use`.
Keys are stored per caller (role and `sub` of the verified token) and kept at least 24 hours.

A route whose use case only touches the database and runs in one unit of work (marked
`idempotent_in_unit_of_work`: cancel, resume, a customer, a plan, a credit, a trial...) has its key taken by that
unit (app/uow.py): the key's row, with the response, is the unit's last statement before COMMIT (one round trip;
the unique key serialises duplicates: on PostgreSQL the insert waits at most KEY_WAIT for a concurrent request
holding the same key, then 409 `idempotency_key_in_use`), so the key, the change and the response commit together
or not at all: no key is ever left in progress by a crash, nothing needs releasing and no witness is written. A
COMMIT of unknown outcome is settled once the database answers, by the key itself (`_settle_unit`): not
committed, nothing is there and the retry runs the request; committed, the stored response was never sent, so the
key is completed with 409 `idempotency_response_lost` (as below; so is a request that fails after its unit
committed). When the unit finds the key there already, it rolls back everything it did (nothing of it is seen,
nor its answer sent) and the request goes the way described next, which replays, refuses or runs it.

Every other route (those that call the gateway, like a purchase or a refund, whose three steps commit separately:
app/payments/steps.py) has its key claimed by one statement before the request runs and its response stored by
one after. A pure ASGI middleware, so the response is captured exactly as sent. Unexpected errors (500 or an
exception), an unreachable gateway (503) and transient refusals (with `Retry-After`, e.g. 409 `charge_in_progress`)
release the key before the answer leaves when none of the request's transactions committed: nothing changed, and
every money movement carries its own gateway idempotency key, so the retry is safe. Every other answer is kept and
replayed.

A request that fails after one of its transactions committed (a purchase or a refund runs several around the
gateway call: reserve, call, record) has changed something, so its key is never simply freed. Its witness
(`last_commit`, below) is read back. Nothing committed: released. Something did, and the request is `resumable()`
(its use case, repeated, finds what the first attempt left and completes it: a refund by its `request_key`, a
purchase by its unanswered first payment): the key is kept and marked abandoned, so the retry with the same key
and body takes it over and runs the request again (`resumed()` tells it so), while another body is still 422.
Something did and the request is not resumable: the key is completed with 409 `idempotency_response_lost`, one
effect, as below.

When the database fails (app/availability.py answers 503 `database_unavailable`), an exception leaves the app
instead of an answer, and the key is settled as for an error answer. The subtle case is a
COMMIT that was sent and never answered (the connection lost in between: `CommitOutcomeUnknown`): it may have
committed, and a retry that ran the request again could do it twice. So each transaction of a request with a key
records, in itself, its number within the request (`last_commit`, one UPDATE before COMMIT; requests without a key
pay nothing). After an unknown COMMIT the key stays `in_progress` (a retry meanwhile: 409
`idempotency_key_in_use`) until the database answers again; then the witness tells: not committed, the key is
released and the retry runs the request; committed (this transaction or an earlier one of the request), the effect
is there once and the retry resumes it (a resumable request) or replays 409 `idempotency_response_lost` (the first
response was never made; the client looks the result up). Either way one effect. A release, a settling, or the
storing of an answer already sent that cannot reach the database is queued for the app's one bookkeeping worker
(app/bookkeeping.py: retried with back-off, for at most ABANDONED_AFTER), so a retry soon after the database's
return finds the key settled. A release or settling touches only this request's own claim (matched by the time it
was claimed), never a later one by the client's retry."""

from __future__ import annotations

import contextvars
import datetime as _dt
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import idempotency_repository as repo
from app.context import AppContext
from app.db import CommitOutcomeUnknown, before_commit, unavailable
from app.errors import Unauthenticated
from app.http import problem_response
from app.idempotency_repository import Completion, KeyStatus
from app.openapi import iter_route_contexts
from app.uow import idempotency_claim

MAX_KEY_LENGTH = 255
# A request that has held its key this long without finishing died with its process: the key may be taken over.
ABANDONED_AFTER = _dt.timedelta(minutes=10)
_REPLAYED_HEADERS = ("content-type", "location")
# How long a unit of work's key insert waits for a concurrent request that inserted the same key and has not
# committed yet, before answering 409 `idempotency_key_in_use` (PostgreSQL; SQLite's write lock queues them).
KEY_WAIT = "100ms"
E = TypeVar("E", bound=Callable[..., Any])
log = logging.getLogger("billing.idempotency")


@dataclass
class KeyedRequest:
    """The request with an Idempotency-Key being served (see `resumable` and `resumed`)."""

    caller: str
    key: str
    resumed: bool  # it took over the key of an earlier attempt that failed after committing something
    resumable: bool = False  # its use case said a repeat completes it rather than doing it twice


_current: contextvars.ContextVar[KeyedRequest | None] = contextvars.ContextVar("keyed_request", default=None)


def resumable() -> KeyedRequest | None:
    """Declared by a use case that, repeated with the same key after failing partway (some of its transactions
    committed), finds what the first attempt left and completes it, never doing it twice: the key is then kept for
    that retry rather than completed with 409 `idempotency_response_lost`. Returns the keyed request, if any."""
    request = _current.get()
    if request is not None:
        request.resumable = True
    return request


def resumed() -> bool:
    """Whether this request took over its key from an earlier attempt that failed after committing something
    (that attempt has ended: whatever it held for itself, a purchase's lease say, is not in flight any more)."""
    request = _current.get()
    return request is not None and request.resumed


def idempotent_in_unit_of_work(endpoint: E) -> E:
    """Mark a POST route whose use case only touches the database and runs in ONE unit of work (app/uow.py) that
    gives its response to `uow.respond`: its `Idempotency-Key` is taken by that unit, with the response, as its
    last statement, so the key, the change and the response commit together. Routes that call the
    gateway (purchase, refund) or open several units keep the separate claim. Put it under `@router.post`."""
    endpoint.idempotent_in_unit_of_work = True  # type: ignore[attr-defined]  # a mark read by the middleware
    return endpoint


class KeyTaken(Exception):
    """The unit of work found the key's row there already: everything it did is rolled back."""


class KeyInUse(Exception):
    """A concurrent request holds the key and has not committed (PostgreSQL): rolled back, answered 409."""


class _UnitClaim:
    """The request's key, taken by its unit of work (`app.uow.KeyClaim`): inserted with the response as the unit's
    last statement before COMMIT. `held`: a unit holds it (the request's first); `taken`: its insert went in (the
    key was free), so an answer given now is the request's own."""

    __slots__ = ("caller", "committed", "fresh", "held", "key", "response", "stored", "taken")

    def __init__(self, ctx: AppContext, caller: str, key: str, fingerprint: str, now: _dt.datetime) -> None:
        self.caller, self.key = caller, key
        self.fresh: dict[str, Any] = {
            "caller": caller,
            "key": key,
            "request_hash": fingerprint,
            "status": KeyStatus.IN_PROGRESS,
            "created_at": now,
            "expires_at": now + _dt.timedelta(hours=ctx.settings.idempotency_ttl_hours),
        }
        self.held = self.taken = self.committed = self.stored = False
        self.response: Response | None = None

    def respond(self, response: Response) -> None:
        self.response = response

    async def store(self, conn: AsyncConnection) -> None:
        """The key with its response (one statement): a key there already, or held by a concurrent request that
        does not commit within KEY_WAIT, raises, and the unit rolls back everything it did."""
        row = {**self.fresh, "response_status": None, "response_headers": None, "response_body": None}
        if self.response is not None:
            done = _completion(
                self.caller, self.key, self.response.status_code, self.response.raw_headers, self.response.body
            )
            row |= {
                "status": KeyStatus.COMPLETED,
                "response_status": done["b_status"],
                "response_headers": done["b_headers"],
                "response_body": done["b_body"],
            }
        try:
            inserted = await repo.take_in_unit(conn, row, KEY_WAIT)
        except repo.KeyBusy:
            raise KeyInUse from None
        if not inserted:
            raise KeyTaken
        self.taken = True
        self.stored = self.response is not None


def _completion(
    caller: str, key: str, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes | bytearray | memoryview
) -> Completion:
    kept = {
        k.decode("latin-1"): v.decode("latin-1")
        for k, v in raw_headers
        if k.decode("latin-1").lower() in _REPLAYED_HEADERS
    }
    return {"b_caller": caller, "b_key": key, "b_status": status, "b_headers": kept, "b_body": bytes(body)}


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._in_unit_routes: list[Any] | None = None  # the routes marked `idempotent_in_unit_of_work`

    def _in_unit_of_work(self, scope: Scope) -> bool:
        """Whether the request goes to a route marked `idempotent_in_unit_of_work` (their paths' patterns, found
        once among the app's routes, those of included routers with their prefixes)."""
        patterns = self._in_unit_routes
        if patterns is None:
            patterns = self._in_unit_routes = [
                compile_path(str(route.path_format))[0]
                for route in iter_route_contexts(scope["app"].routes)
                if getattr(route.endpoint, "idempotent_in_unit_of_work", False) and "POST" in (route.methods or ())
            ]
        path = scope["path"]
        return any(pattern.match(path) for pattern in patterns)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        key = headers.get("idempotency-key")
        if key is None:
            return await self.app(scope, receive, send)
        if not key or len(key) > MAX_KEY_LENGTH:
            return await problem_response(
                "validation_error",
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters",
                errors=[{"field": "Idempotency-Key", "location": "header", "message": "invalid length"}],
            )(scope, receive, send)
        ctx: AppContext = scope["app"].state.ctx
        principal = scope.get("state", {}).get("principal")  # verified already by the rate limiter
        if principal is None:
            try:
                principal = ctx.tokens.verify(headers.get("authorization"))
            except Unauthenticated:
                return await self.app(scope, receive, send)  # the route answers 401; nothing is stored
            scope.setdefault("state", {})["principal"] = principal

        body = await _read_body(receive)
        fingerprint, legacy = _fingerprints(scope, body)
        caller = principal.caller_key

        claimed_at = ctx.system_clock.wall()
        if self._in_unit_of_work(scope) and await self._in_one_transaction(
            scope, _replaying(body, receive), send, ctx, caller, key, fingerprint, claimed_at
        ):
            return
        try:
            refusal = await _claim(ctx, caller, key, fingerprint, claimed_at, legacy)
        except Exception as exc:
            if unavailable(exc):  # the claim may have been written and its answer lost: free it when possible
                _later(ctx, ("release", caller, key, claimed_at), _release, ctx, caller, key, claimed_at)
            raise
        if isinstance(refusal, bool):
            request = KeyedRequest(caller, key, resumed=refusal)
        else:
            return await refusal(scope, receive, send)
        transactions = 0

        async def settle() -> None:
            """After a failure: free the key if none of the request's transactions committed, else settle it."""
            if transactions == 0:
                await _release_now_or_later(ctx, caller, key, claimed_at)
            else:
                await _now_or_later(
                    ctx, ("settle", caller, key, claimed_at), _settle, ctx, caller, key, claimed_at, request.resumable
                )

        captured: dict[str, Any] = {"status": 500, "headers": [], "body": bytearray(), "released": False}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = message.get("headers", [])
                if _releases(message["status"], captured["headers"]):
                    # Settled before the client hears back, so the retry it makes at once finds the key free.
                    await settle()
                    captured["released"] = True
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")
            await send(message)

        async def witness(conn: AsyncConnection) -> None:  # in each of the request's transactions, before COMMIT
            nonlocal transactions
            transactions += 1
            await repo.witness(conn, caller, key, transactions)

        witnessing = before_commit.set(witness)
        serving = _current.set(request)
        try:
            await self.app(scope, _replaying(body, receive), capture)
        except BaseException as exc:
            if captured["released"]:
                raise
            if any(isinstance(cause, CommitOutcomeUnknown) for cause in _chain(exc)):
                # Its last transaction may have committed: settled once the database tells (module docstring).
                log.warning(
                    "COMMIT outcome unknown; the key waits for the database",
                    extra={"caller": caller, "idempotency_key": key},
                )
            await settle()
            raise
        finally:
            _current.reset(serving)
            before_commit.reset(witnessing)
        if captured["released"]:
            return
        await _keep(
            ctx,
            ("complete", caller, key),
            _complete,
            ctx,
            _completion(caller, key, captured["status"], captured["headers"], captured["body"]),
        )

    async def _in_one_transaction(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ctx: AppContext,
        caller: str,
        key: str,
        fingerprint: str,
        claimed_at: _dt.datetime,
    ) -> bool:
        """Run a route marked `idempotent_in_unit_of_work` with its key handed to its unit of work. False when
        the unit found the key there already (a replay, a different body, a key past its retention or
        abandoned, a request still running): it rolled back everything it did, and the caller decides the
        separate-claim way (`_claim`), which runs the request again only if the key is free to take.

        Nothing is ever released: an error rolls the key back with the change, and a COMMIT of unknown outcome
        needs no witness: once the database answers, the key's insert finds whether it committed (`_settle_unit`:
        then the retry replays 409 `idempotency_response_lost`, as on the separate-claim way) or not. An answer
        given without the unit committing (a refusal, a validation error) is stored by one statement, when it is
        one to keep (`_releases`). A request that fails after its unit committed (what it left for after the
        COMMIT failed) has its key completed with 409 `idempotency_response_lost`, as on the separate-claim way:
        the effect is there once and the stored response was never sent."""
        claim = _UnitClaim(ctx, caller, key, fingerprint, claimed_at)
        captured: dict[str, Any] = {"status": 500, "headers": [], "body": bytearray()}
        # An answer given before a unit took the key (a refusal, rolled back with it): sent once the key is known free.
        held: list[Message] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = message.get("headers", [])
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")
            if held or (message["type"] == "http.response.start" and not claim.taken):
                held.append(message)
            else:
                await send(message)

        handing = idempotency_claim.set(claim)
        try:
            await self.app(scope, receive, capture)
        except KeyTaken:
            return False
        except KeyInUse:
            await problem_response("idempotency_key_in_use", "the first request with this key is still running")(
                scope, receive, send
            )
            return True
        except BaseException as exc:
            if claim.committed:  # it failed after its unit committed (work left for after the COMMIT, say)
                await _now_or_later(ctx, ("complete", caller, key), _complete, ctx, _response_lost(caller, key))
            elif claim.taken and any(isinstance(cause, CommitOutcomeUnknown) for cause in _chain(exc)):
                # The unit's COMMIT may have gone through with the key and its response: settled once the
                # database tells (`_settle_unit`), so the retry replays 409 `idempotency_response_lost` or runs.
                log.warning(
                    "COMMIT outcome unknown; the key waits for the database",
                    extra={"caller": caller, "idempotency_key": key},
                )
                await _now_or_later(
                    ctx,
                    ("settle", caller, key, claimed_at),
                    _settle_unit,
                    ctx,
                    claim.fresh,
                    _response_lost(caller, key),
                )
            raise
        finally:
            idempotency_claim.reset(handing)
        releases = _releases(captured["status"], captured["headers"])
        if claim.committed:
            if claim.stored and claim.response is not None and claim.response.status_code == captured["status"]:
                return True  # the usual case: the key, the change and the response committed together
            if claim.stored or releases:
                # The unit committed, then the request failed (an error answer instead of the one stored): its
                # effect is there once, and the retry is told so (409 `idempotency_response_lost`), never run again
                # nor given an answer the client was not given.
                await _keep(ctx, ("complete", caller, key), _complete, ctx, _response_lost(caller, key))
                return True
        answer = _completion(caller, key, captured["status"], captured["headers"], captured["body"])
        if held:
            # Answered before a unit took the key (a validation error, a refusal): kept only if the key is new; a
            # key there already decides instead (a replay, a different body, a request still running).
            if not releases and not await _keep(
                ctx, ("complete", caller, key), _store_answer, ctx, claim.fresh, answer
            ):
                return False
            for message in held:
                await send(message)
            return True
        if releases:
            return True  # nothing of the request was kept, the key neither
        if claim.committed:  # the unit committed the key but was given no response: stored as before
            await _keep(ctx, ("complete", caller, key), _complete, ctx, answer)
        else:  # an answer from a unit rolled back (a refusal)
            await _keep(ctx, ("complete", caller, key), _store_answer, ctx, claim.fresh, answer)
        return True


Operation = Callable[..., Awaitable[Any]]  # a bookkeeping statement (app/bookkeeping.py runs it again later)


async def _keep(ctx: AppContext, what: tuple[object, ...], operation: Operation, *args: object) -> bool:
    """Store an answer; when the database cannot be reached, queued for the bookkeeping worker (the client has its
    answer; a retry will find it stored). False when the key was there already (`_store_answer`)."""
    try:
        return await operation(*args) is not False
    except Exception as exc:
        if not unavailable(exc):
            raise
        _later(ctx, what, operation, *args)
        return True


def _response_lost(caller: str, key: str) -> Completion:
    """The key completed with 409 `idempotency_response_lost`: the request took effect, its response was lost."""
    response = problem_response(
        "idempotency_response_lost",
        "the first request with this key took effect, "
        "but its response was lost with the database connection; look the result up",
    )
    return {
        "b_caller": caller,
        "b_key": key,
        "b_status": response.status_code,
        "b_headers": {"content-type": response.media_type},
        "b_body": response.body,
    }


async def _complete(ctx: AppContext, values: Completion) -> None:
    async with ctx.db.autocommit() as conn:  # one statement: no transaction round trips
        await repo.complete(conn, values)


async def _store_answer(ctx: AppContext, fresh: dict[str, Any], values: Completion) -> bool:
    """The key, completed with `values` (its answer), by one statement; a key there already is left alone
    (False)."""
    row = {
        **fresh,
        "status": KeyStatus.COMPLETED,
        "response_status": values["b_status"],
        "response_headers": values["b_headers"],
        "response_body": values["b_body"],
        "last_commit": None,
    }
    async with ctx.db.autocommit() as conn:
        return await repo.insert_new(conn, row)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """The request's body, read already, given to the app once more."""
    sent = False

    async def replay_body() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay_body


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


async def _release_now_or_later(ctx: AppContext, caller: str, key: str, claimed_at: _dt.datetime) -> None:
    await _now_or_later(ctx, ("release", caller, key, claimed_at), _release, ctx, caller, key, claimed_at)


async def _now_or_later(ctx: AppContext, what: tuple[object, ...], operation: Operation, *args: object) -> None:
    """`operation(*args)` now, or, if the database cannot be reached, queued for the bookkeeping worker."""
    witnessing = before_commit.set(None)  # bookkeeping is not one of the request's transactions
    try:
        await operation(*args)
    except Exception as exc:
        if not unavailable(exc):
            raise
        _later(ctx, what, operation, *args)
    finally:
        before_commit.reset(witnessing)


def _later(ctx: AppContext, what: tuple[object, ...], operation: Operation, *args: object) -> None:
    """Hand `operation(*args)` to the app's one bookkeeping worker (app/bookkeeping.py), which tries it until the
    database lets it through (or ABANDONED_AFTER); `what` names it (the same operation queued twice is tried once)."""
    ctx.bookkeeping.submit(what, operation, *args)


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


def _releases(status: int, headers: list[tuple[bytes, bytes]]) -> bool:
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


async def _claim(
    ctx: AppContext,
    caller: str,
    key: str,
    fingerprint: str,
    now: _dt.datetime,
    legacy: str | None = None,
) -> bool | Response:
    """Take the key for this request (claimed at `now`): False, or True when it takes over the key of an attempt
    that failed after committing something (see `resumed`); or return the response that refuses or replays it.
    `legacy`: the request's raw-bytes fingerprint, as the release before canonical bodies stored it (see
    `_fingerprints`)."""
    fresh: dict[str, Any] = {
        "caller": caller,
        "key": key,
        "request_hash": fingerprint,
        "status": KeyStatus.IN_PROGRESS,
        "created_at": now,
        "expires_at": now + _dt.timedelta(hours=ctx.settings.idempotency_ttl_hours),
        "response_status": None,
        "response_headers": None,
        "response_body": None,
        "last_commit": None,
    }
    while True:
        async with ctx.db.autocommit() as conn:
            if await repo.insert_new(conn, fresh):
                return False  # the usual case: a new key, one statement, no transaction round trips
        async with ctx.db.transaction() as conn:
            row = await repo.lock(conn, caller, key)
            if row is None:
                continue  # released or purged since the insert found it: claim it again
            if row.expires_at <= now:  # a key past its retention is a new key
                await repo.replace(conn, caller, key, fresh)
                return False
            if row.request_hash != fingerprint and (legacy is None or row.request_hash != legacy):
                return problem_response(
                    "idempotency_key_reused", "this Idempotency-Key was used with a different request"
                )
            if row.status == KeyStatus.IN_PROGRESS:
                if now - row.created_at < ABANDONED_AFTER:
                    return problem_response(
                        "idempotency_key_in_use", "the first request with this key is still running"
                    )
                await repo.take_over(conn, caller, key, now)
                return True
            break
    assert row.response_status is not None  # a completed key holds its response
    response = Response(row.response_body, status_code=row.response_status, headers=row.response_headers or {})
    response.headers["Idempotent-Replayed"] = "true"
    return response


async def _settle(ctx: AppContext, caller: str, key: str, claimed_at: _dt.datetime, resumable: bool) -> None:
    """After a request failed (an error, an exception, a COMMIT whose answer was lost) having run transactions: did
    any of them commit (its witness, `last_commit`, says; the row lock waits out one still being rolled back)? No:
    the key is released and the client's retry runs the request. Yes, and the request is resumable: the key is kept
    and marked abandoned, for the retry with the same body to take over and complete the request. Yes, and it is
    not: its effect is there, once; the key is completed with 409 `idempotency_response_lost` for the retry to
    replay (the first response was never made), so it is not made twice."""
    async with ctx.db.transaction() as conn:
        row = await repo.lock_claim(conn, caller, key, claimed_at)
        if row is None:
            return
        if row.last_commit is None:
            await repo.remove(conn, caller, key)
            return
        if resumable:
            await repo.mark_claimed_at(conn, caller, key, claimed_at - ABANDONED_AFTER)
            return
        await repo.complete(conn, _response_lost(caller, key))


async def _settle_unit(ctx: AppContext, fresh: dict[str, Any], lost: Completion) -> None:
    """After a unit of work that held a request's key lost its COMMIT's answer: did it commit? The key's insert
    waits for that transaction to end (the unique key). Not committed: the insert succeeds and is undone, the key
    stays free and the retry runs the request. Committed: its effect is there once and its stored response was
    never sent; the key is completed with 409 `idempotency_response_lost` (only that request's own key, matched
    by the time it was taken)."""
    async with ctx.db.transaction() as conn:
        if await repo.insert_new(conn, fresh):
            await repo.remove(conn, fresh["caller"], fresh["key"])
            return
        await repo.complete_unit_key(conn, lost, fresh["created_at"])


async def _release(ctx: AppContext, caller: str, key: str, claimed_at: _dt.datetime) -> None:
    """Free the key this request claimed at `claimed_at` (a later claim of the same key is left alone)."""
    async with ctx.db.autocommit() as conn:
        await repo.release(conn, caller, key, claimed_at)


async def purge_expired_keys(ctx: AppContext, now: _dt.datetime) -> int:
    """Scheduled job: drop keys past their retention (real time, not the sandbox clock), one batch per call."""
    wall = ctx.system_clock.wall()
    async with ctx.db.transaction() as conn:
        return await repo.purge_expired(conn, wall, ctx.settings.job_batch_size)
