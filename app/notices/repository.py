"""Every statement about the notice outbox: notices queued at most once per `dedupe_key`, read back, claimed in
batches by the `deliver_notices` job, and their outcome written while the job's lease is still on them.

The statements run for every notice a batch sends are built once, at import; values travel as parameters.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.claims import claim_batch
from app.db import insert_ignoring_conflict
from app.models import customers, notices
from app.pagination import PageParams, fetch_page
from policies.states import NoticeStatus


class NoticeRow(Protocol):
    """A row of `notices` (app/models/notices.py)."""

    id: str
    customer_id: str
    type: str
    category: str  # NoticeCategory
    dedupe_key: str
    subject: str
    body: str
    created_at: _dt.datetime
    status: str  # NoticeStatus
    sent_at: _dt.datetime | None
    attempts: int
    next_attempt_at: _dt.datetime
    lease_until: _dt.datetime | None
    last_error: str | None


class NoticeToSend(Protocol):
    """A notice claimed for delivery, with its customer's address (None once erased, D3) and marketing choice."""

    id: str
    category: str  # NoticeCategory
    subject: str
    body: str
    attempts: int
    dedupe_key: str
    email: str | None
    marketing_opt_out: bool


async def add_once(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Queue notices; one whose `dedupe_key` exists already is not written again."""
    if len(rows) == 1:  # a single row needs no RETURNING to be counted (and nobody counts it here)
        await insert_ignoring_conflict(conn, notices, dict(rows[0]), conflict_on=["dedupe_key"])
    elif rows:
        await insert_ignoring_conflict(conn, notices, [dict(row) for row in rows], conflict_on=["dedupe_key"])


async def by_dedupe_key(conn: AsyncConnection, dedupe_key: str) -> NoticeRow:
    return (await conn.execute(select(notices).where(notices.c.dedupe_key == dedupe_key))).one()


async def page_of_customer(
    conn: AsyncConnection, customer_id: str, params: PageParams
) -> tuple[Sequence[NoticeRow], bool]:
    """One page of a customer's notices, newest first, and whether there are more."""
    return await fetch_page(conn, select(notices).where(notices.c.customer_id == customer_id), notices.c.id, params)


_TO_SEND = select(
    notices.c.id,
    notices.c.category,
    notices.c.subject,
    notices.c.body,
    notices.c.attempts,
    notices.c.dedupe_key,
    customers.c.email,
    customers.c.marketing_opt_out,
).join(customers, customers.c.id == notices.c.customer_id)


async def claim_due(
    conn: AsyncConnection, *, wall: _dt.datetime, lease_until: _dt.datetime, limit: int
) -> Sequence[NoticeToSend]:
    """Pending notices due by `wall` (real time) that no run holds, at most `limit`, oldest due first, taken by this
    transaction (app/claims.py) with their lease set to `lease_until`: no other run sends them until it runs out."""
    due = _TO_SEND.where(
        notices.c.status == NoticeStatus.PENDING,
        notices.c.next_attempt_at <= wall,
        or_(notices.c.lease_until.is_(None), notices.c.lease_until <= wall),
    ).order_by(notices.c.next_attempt_at)
    return await claim_batch(
        conn,
        due,
        of=notices,
        limit=limit,
        postgres=conn.dialect.name == "postgresql",
        lease=notices.c.lease_until,
        until=lease_until,
    )


# Statements on one notice, written only while it is pending and the run's lease (`held`) is on it.
_HELD = update(notices).where(
    notices.c.id == bindparam("notice_id"),
    notices.c.status == NoticeStatus.PENDING,
    notices.c.lease_until == bindparam("held"),
)
_EXTEND = _HELD.values(lease_until=bindparam("b_until"))
_SKIPPED = _HELD.values(status=NoticeStatus.SKIPPED, lease_until=None)
_FAILED = _HELD.values(
    attempts=bindparam("b_attempts"),
    next_attempt_at=bindparam("b_next"),
    last_error=bindparam("b_error"),
    lease_until=None,
)
_SENT = _HELD.values(
    status=bindparam("b_status"),
    sent_at=bindparam("b_at"),
    attempts=bindparam("b_attempts"),
    last_error=None,
    lease_until=None,
)


async def extend_lease(conn: AsyncConnection, notice_id: str, held: _dt.datetime, until: _dt.datetime) -> bool:
    """The lease moved from `held` to `until` if the notice is still pending under it; whether it was (False:
    recorded meanwhile, erased (D3), or claimed by another run once the lease ran out)."""
    result = await conn.execute(_EXTEND, {"notice_id": notice_id, "held": held, "b_until": until})
    return bool(result.rowcount)


async def mark_skipped(conn: AsyncConnection, notice_id: str, held: _dt.datetime) -> None:
    await conn.execute(_SKIPPED, {"notice_id": notice_id, "held": held})


async def mark_failed(
    conn: AsyncConnection,
    notice_id: str,
    held: _dt.datetime,
    *,
    attempts: int,
    next_attempt_at: _dt.datetime,
    error: str,
) -> None:
    await conn.execute(
        _FAILED,
        {"notice_id": notice_id, "held": held, "b_attempts": attempts, "b_next": next_attempt_at, "b_error": error},
    )


async def mark_delivered(
    conn: AsyncConnection,
    notice_id: str,
    held: _dt.datetime,
    *,
    status: NoticeStatus,
    at: _dt.datetime,
    attempts: int,
) -> None:
    await conn.execute(
        _SENT, {"notice_id": notice_id, "held": held, "b_status": status, "b_at": at, "b_attempts": attempts}
    )
