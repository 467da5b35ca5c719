"""The notice outbox: notices are created in the transaction of the change that causes them, at most once per
`dedupe_key`, and delivered later by the `deliver_notices` job."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import insert_ignoring_conflict
from app.ids import new_id
from app.models import notices

SERVICE = "service"  # T3, T4, B5, C1 confirmations, receipts: sent whatever the marketing choice (D4)
MARKETING = "marketing"


@dataclass(frozen=True)
class NewNotice:
    customer_id: str
    type: str
    dedupe_key: str
    subject: str
    body: str
    category: str = SERVICE


def notice_row(notice: NewNotice, now: _dt.datetime, wall: _dt.datetime) -> dict:
    return {
        "id": new_id("ntc"),
        "customer_id": notice.customer_id,
        "type": notice.type,
        "category": notice.category,
        "dedupe_key": notice.dedupe_key,
        "subject": notice.subject,
        "body": notice.body,
        "created_at": now,
        "status": "pending",
        "sent_at": None,
        "attempts": 0,
        "next_attempt_at": wall,
        "lease_until": None,
        "last_error": None,
    }


async def create_notices(conn: AsyncConnection, items: list[NewNotice], now: _dt.datetime, wall: _dt.datetime) -> None:
    """Queue notices; one whose dedupe_key exists already is not created again (exactly once)."""
    if len(items) == 1:  # a single row needs no RETURNING to be counted (and nobody counts it here)
        await insert_ignoring_conflict(conn, notices, notice_row(items[0], now, wall), conflict_on=["dedupe_key"])
    elif items:
        await insert_ignoring_conflict(
            conn, notices, [notice_row(n, now, wall) for n in items], conflict_on=["dedupe_key"]
        )
