"""The `Idempotency-Key` records (table `idempotency_keys`): every statement app/idempotency.py runs, and the one
difference between the databases there (how a unit of work takes a key, with its response: `take_in_unit`). The
statements run on every keyed write are built once, at import (measured: building and compiling them per call was
a visible share of a write's CPU)."""

from __future__ import annotations

import datetime as _dt
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import _causes, insert_ignoring_conflict
from app.models import idempotency_keys as keys


class KeyStatus(StrEnum):
    """A key's state: its first request still running, or its response stored for replay."""

    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class StoredKey(Protocol):
    """A row of `idempotency_keys`, as read back (a typed view: no runtime cost)."""

    request_hash: str
    status: str
    created_at: _dt.datetime
    expires_at: _dt.datetime
    response_status: int | None
    response_headers: dict[str, str] | None
    response_body: bytes | None
    last_commit: int | None


class KeyBusy(Exception):
    """PostgreSQL: a concurrent request inserted the same key and has not committed within the wait."""


# A key's completion, its values bound by these names: b_caller, b_key, b_status, b_headers, b_body.
Completion = dict[str, Any]

_COMPLETE = (
    update(keys)
    .where(keys.c.caller == bindparam("b_caller"), keys.c.key == bindparam("b_key"))
    .values(
        status=KeyStatus.COMPLETED,
        response_status=bindparam("b_status"),
        response_headers=bindparam("b_headers"),
        response_body=bindparam("b_body"),
    )
)
_WITNESS = (
    update(keys)
    .where(keys.c.caller == bindparam("b_caller"), keys.c.key == bindparam("b_key"))
    .values(last_commit=bindparam("b_n"))
)
# The key taken by a unit of work on PostgreSQL, as its last statement before COMMIT, with the response to store:
# the insert waits at most `wait` for a concurrent transaction that inserted the same key and has not committed
# (`lock_timeout`, set for this statement only: the RETURNING puts it back); no row back: the key existed already.
_TAKE_POSTGRES = text(
    "WITH wait AS (SELECT current_setting('lock_timeout') AS before,"
    " set_config('lock_timeout', :wait, true) AS during)"
    " INSERT INTO idempotency_keys (caller, key, request_hash, status, created_at, expires_at,"
    " response_status, response_headers, response_body)"
    " SELECT CAST(:caller AS VARCHAR), CAST(:key AS VARCHAR), CAST(:request_hash AS VARCHAR), CAST(:status AS VARCHAR),"
    " CAST(:created_at AS TIMESTAMP WITH TIME ZONE), CAST(:expires_at AS TIMESTAMP WITH TIME ZONE),"
    " CAST(:response_status AS INTEGER), CAST(:response_headers AS JSON), CAST(:response_body AS BYTEA)"
    " FROM wait WHERE wait.during IS NOT NULL"
    " ON CONFLICT DO NOTHING"
    " RETURNING set_config('lock_timeout', (SELECT before FROM wait), true)"
).bindparams(
    bindparam("created_at", type_=keys.c.created_at.type),
    bindparam("expires_at", type_=keys.c.expires_at.type),
    bindparam("response_headers", type_=keys.c.response_headers.type),
    bindparam("response_body", type_=keys.c.response_body.type),
)
_LOCK_NOT_AVAILABLE = "55P03"


def _this(caller: str, key: str) -> tuple[Any, Any]:
    return keys.c.caller == caller, keys.c.key == key


async def take_in_unit(conn: AsyncConnection, row: dict[str, Any], wait: str) -> bool:
    """A unit of work's last statement before COMMIT: insert the key `row` (with the response it stores, if any);
    False when the key was there already. On PostgreSQL the insert waits at most `wait` for a concurrent request
    that inserted the key and has not committed (`KeyBusy` then); on SQLite the unit holds the write lock (BEGIN
    IMMEDIATE), nobody else can hold the key."""
    if conn.dialect.name == "postgresql":
        try:
            return (await conn.execute(_TAKE_POSTGRES, {**row, "wait": wait})).first() is not None
        except DBAPIError as exc:
            if any(getattr(cause, "sqlstate", None) == _LOCK_NOT_AVAILABLE for cause in _causes(exc)):
                raise KeyBusy from None
            raise
    return await insert_ignoring_conflict(conn, keys, row) == 1


async def insert_new(conn: AsyncConnection, row: dict[str, Any]) -> bool:
    """Insert the key `row` unless the key exists (one statement): whether it was inserted."""
    return await insert_ignoring_conflict(conn, keys, row) == 1


async def lock(conn: AsyncConnection, caller: str, key: str) -> StoredKey | None:
    """The key's row, locked for the rest of the transaction; None if there is none."""
    row: StoredKey | None = (await conn.execute(select(keys).where(*_this(caller, key)).with_for_update())).first()
    return row


async def replace(conn: AsyncConnection, caller: str, key: str, fresh: dict[str, Any]) -> None:
    """The key's row overwritten with `fresh` (a key past its retention, taken as new)."""
    await conn.execute(update(keys).where(*_this(caller, key)).values(**fresh))


async def take_over(conn: AsyncConnection, caller: str, key: str, now: _dt.datetime) -> None:
    """An abandoned key taken by a new attempt claimed at `now`, with no transaction witnessed yet."""
    await conn.execute(update(keys).where(*_this(caller, key)).values(created_at=now, last_commit=None))


async def complete(conn: AsyncConnection, completion: Completion) -> None:
    """The key completed with its response, for replay."""
    await conn.execute(_COMPLETE, completion)


async def complete_unit_key(conn: AsyncConnection, completion: Completion, created_at: _dt.datetime) -> None:
    """The key a unit of work committed with its response at `created_at` (and no later one) given `completion`
    instead."""
    await conn.execute(
        _COMPLETE.where(keys.c.created_at == created_at, keys.c.status == KeyStatus.COMPLETED), completion
    )


async def witness(conn: AsyncConnection, caller: str, key: str, n: int) -> None:
    """Record, in the request's `n`th transaction, that it commits (`last_commit`)."""
    await conn.execute(_WITNESS, {"b_caller": caller, "b_key": key, "b_n": n})


async def lock_claim(conn: AsyncConnection, caller: str, key: str, claimed_at: _dt.datetime) -> StoredKey | None:
    """The key still in progress as claimed at `claimed_at`, locked (waits for a transaction of the request still
    being rolled back); None if it is not so any more."""
    row: StoredKey | None = (
        await conn.execute(
            select(keys)
            .where(*_this(caller, key), keys.c.status == KeyStatus.IN_PROGRESS, keys.c.created_at == claimed_at)
            .with_for_update()
        )
    ).first()
    return row


async def remove(conn: AsyncConnection, caller: str, key: str) -> None:
    await conn.execute(delete(keys).where(*_this(caller, key)))


async def mark_claimed_at(conn: AsyncConnection, caller: str, key: str, at: _dt.datetime) -> None:
    """Date the key's claim `at` (in the past: it reads as abandoned, for a retry to take over)."""
    await conn.execute(update(keys).where(*_this(caller, key)).values(created_at=at))


async def release(conn: AsyncConnection, caller: str, key: str, claimed_at: _dt.datetime) -> None:
    """Free the key claimed at `claimed_at` and still in progress (a later claim of the same key is left alone)."""
    await conn.execute(
        delete(keys).where(*_this(caller, key), keys.c.status == KeyStatus.IN_PROGRESS, keys.c.created_at == claimed_at)
    )


async def purge_expired(conn: AsyncConnection, wall: _dt.datetime, limit: int) -> int:
    """Delete at most `limit` keys past their retention at real time `wall`: how many."""
    expired = (
        await conn.execute(select(keys.c.caller, keys.c.key).where(keys.c.expires_at <= wall).limit(limit))
    ).all()
    for caller, key in expired:
        await conn.execute(delete(keys).where(*_this(caller, key)))
    return len(expired)
