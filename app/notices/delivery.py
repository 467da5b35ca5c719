"""The `deliver_notices` job. Claims a batch of pending notices with a short lease (so several replicas never
send the same notice at once and no transaction is held open while talking to SMTP), sends them, then records
the outcome. A failure is retried later with back-off; the notice is never duplicated."""

from __future__ import annotations

import datetime as _dt
import logging

from sqlalchemy import or_, select, update

from app.models import customers, notices

log = logging.getLogger("billing.notices")
LEASE = _dt.timedelta(minutes=2)
MAX_BACKOFF = _dt.timedelta(hours=6)


def backoff(attempts: int) -> _dt.timedelta:
    return min(MAX_BACKOFF, _dt.timedelta(seconds=30 * 2 ** max(0, attempts - 1)))


async def deliver_notices(ctx, now: _dt.datetime) -> int:  # noqa: ANN001
    wall = ctx.system_clock.wall()
    async with ctx.db.transaction() as conn:
        due = (
            select(notices.c.id)
            .where(notices.c.status == "pending", notices.c.next_attempt_at <= wall,
                   or_(notices.c.lease_until.is_(None), notices.c.lease_until <= wall))
            .order_by(notices.c.next_attempt_at)
            .limit(ctx.settings.job_batch_size)
        )
        if ctx.db.is_postgres:
            due = due.with_for_update(skip_locked=True)
        ids = (await conn.execute(due)).scalars().all()
        if not ids:
            return 0
        await conn.execute(update(notices).where(notices.c.id.in_(ids)).values(lease_until=wall + LEASE))
        batch = (await conn.execute(
            select(notices.c.id, notices.c.category, notices.c.subject, notices.c.body, notices.c.attempts,
                   customers.c.email, customers.c.marketing_opt_out)
            .join(customers, customers.c.id == notices.c.customer_id)
            .where(notices.c.id.in_(ids))
        )).all()

    outcomes: list[tuple[str, dict]] = []
    for item in batch:
        if item.email is None or (item.category == "marketing" and item.marketing_opt_out):
            # D3: nobody to write to any more; D4: the customer objected to marketing.
            outcomes.append((item.id, {"status": "skipped", "lease_until": None}))
            continue
        try:
            await ctx.mailer.send(item.id, item.email, item.subject, item.body)
        except Exception as exc:  # noqa: BLE001 - a failed delivery of any kind stays pending and is retried
            attempts = item.attempts + 1
            log.warning("notice delivery failed", extra={"notice_id": item.id, "attempts": attempts,
                                                         "error": type(exc).__name__})
            outcomes.append((item.id, {"attempts": attempts, "next_attempt_at": wall + backoff(attempts),
                                       "lease_until": None, "last_error": type(exc).__name__}))
            continue
        outcomes.append((item.id, {"status": ctx.mailer.delivered_status, "sent_at": now,
                                   "attempts": item.attempts + 1, "lease_until": None, "last_error": None}))

    async with ctx.db.transaction() as conn:
        for notice_id, values in outcomes:
            await conn.execute(update(notices).where(notices.c.id == notice_id).values(**values))
    return len(outcomes)
