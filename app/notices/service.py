"""The notice outbox: notices are created in the transaction of the change that causes them, at most once per
`dedupe_key`, and delivered later by the `deliver_notices` job. Ops' messages to a customer are queued here too."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.audit.service import record
from app.auth import Principal
from app.customers import repository as customer_repo
from app.ids import new_id
from app.notices import repository
from app.notices.repository import NoticeRow
from app.uow import UnitOfWork
from policies.states import NoticeCategory, NoticeStatus

# I1: a receipt's dedupe key is this prefix and its payment's id (the mailed receipt attaches that one's invoice).
RECEIPT_KEY = "receipt:"


@dataclass(frozen=True)
class NewNotice:
    customer_id: str
    type: str
    dedupe_key: str
    subject: str
    body: str
    # T3, T4, B5, C1 confirmations, receipts: service, sent whatever the marketing choice (D4)
    category: NoticeCategory = NoticeCategory.SERVICE


def notice_row(notice: NewNotice, now: _dt.datetime, wall: _dt.datetime) -> dict[str, Any]:
    return {
        "id": new_id("ntc"),
        "customer_id": notice.customer_id,
        "type": notice.type,
        "category": notice.category,
        "dedupe_key": notice.dedupe_key,
        "subject": notice.subject,
        "body": notice.body,
        "created_at": now,
        "status": NoticeStatus.PENDING,
        "sent_at": None,
        "attempts": 0,
        "next_attempt_at": wall,
        "lease_until": None,
        "last_error": None,
    }


async def create_notices(conn: AsyncConnection, items: list[NewNotice], now: _dt.datetime, wall: _dt.datetime) -> None:
    """Queue notices; one whose dedupe_key exists already is not created again (exactly once)."""
    await repository.add_once(conn, [notice_row(n, now, wall) for n in items])


async def send_message(
    uow: UnitOfWork, principal: Principal, customer_id: str, category: NoticeCategory, subject: str, body: str
) -> NoticeRow:
    """A message from ops to a customer (an announcement, an offer), queued for delivery: a marketing one respects
    the customer's objection when it is sent (D4); a service one is always delivered."""
    conn, now = uow.conn, uow.now
    customer = await customer_repo.get_visible(conn, principal, customer_id)
    key = new_id("msg")
    await create_notices(
        conn, [NewNotice(customer.id, category, key, subject, body, category=category)], now, uow.wall()
    )
    row = await repository.by_dedupe_key(conn, key)
    await record(
        conn,
        principal,
        "notice.message_queued",
        now,
        subject_type="notice",
        subject_id=row.id,
        customer_id=customer.id,
        data={"category": category},
    )
    return row
