"""The `deliver_notices` job. Claims a batch of pending notices with a short lease (so several replicas never
send the same notice at once and no transaction is held open while talking to SMTP), then sends them one by one,
recording each outcome as soon as it is known: a delivery is written the moment the SMTP server has accepted the
message, a failure is retried later with back-off.

Delivery is at-least-once: after a crash (or a lost connection to the database) between the server's acceptance
of a message and the recording of it, that one message is sent again once its lease runs out. Only the message in
flight at the crash can be sent twice, and every copy carries the same Message-ID (derived from the notice id, see
app/notices/mailer.py), so the receiving side can recognise and drop the duplicate.

A slow SMTP server cannot make two replicas send one notice: a message is only started with at least SEND_LIMIT of
its lease left (the lease is extended first if needed, provided this run still holds it), a send is given up after
SEND_LIMIT (and retried later), and every outcome is written only while this run's lease is still on the notice."""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging

from sqlalchemy import bindparam, or_, select, update

from app.models import customers, notices
from app.uow import unit_of_work

log = logging.getLogger("billing.notices")
LEASE = _dt.timedelta(minutes=2)
SEND_LIMIT = _dt.timedelta(seconds=30)  # the longest one message may take; a send still running then is given up
MAX_BACKOFF = _dt.timedelta(hours=6)

# Statements on one notice, written only while it is pending and this run's lease (`held`) is on it (built once;
# values travel as parameters).
_HELD = update(notices).where(
    notices.c.id == bindparam("notice_id"), notices.c.status == "pending", notices.c.lease_until == bindparam("held")
)
_EXTEND = _HELD.values(lease_until=bindparam("b_until"))
_SKIPPED = _HELD.values(status="skipped", lease_until=None)
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


def backoff(attempts: int) -> _dt.timedelta:
    return min(MAX_BACKOFF, _dt.timedelta(seconds=30 * 2 ** max(0, attempts - 1)))


async def deliver_notices(ctx, now: _dt.datetime) -> int:  # noqa: ANN001
    wall = ctx.system_clock.wall()
    async with unit_of_work(ctx, now=now) as uow:
        conn = uow.conn
        due = (
            select(notices.c.id)
            .where(
                notices.c.status == "pending",
                notices.c.next_attempt_at <= wall,
                or_(notices.c.lease_until.is_(None), notices.c.lease_until <= wall),
            )
            .order_by(notices.c.next_attempt_at)
            .limit(ctx.settings.job_batch_size)
        )
        if ctx.db.is_postgres:
            due = due.with_for_update(skip_locked=True)
        ids = (await conn.execute(due)).scalars().all()
        if not ids:
            return 0
        lease = wall + LEASE
        await conn.execute(update(notices).where(notices.c.id.in_(ids)).values(lease_until=lease))
        batch = (
            await conn.execute(
                select(
                    notices.c.id,
                    notices.c.category,
                    notices.c.subject,
                    notices.c.body,
                    notices.c.attempts,
                    customers.c.email,
                    customers.c.marketing_opt_out,
                )
                .join(customers, customers.c.id == notices.c.customer_id)
                .where(notices.c.id.in_(ids))
            )
        ).all()

    # One autocommit connection for the batch: each statement is a single UPDATE, durable as soon as it returns (no
    # BEGIN/COMMIT round trips, no transaction open while SMTP is talked to).
    done = 0
    # One mailer session for the batch, too (over SMTP, one connection).
    async with ctx.db.autocommit() as conn, ctx.mailer.session() as send:
        for item in batch:
            held, started = lease, ctx.system_clock.wall()
            if started + SEND_LIMIT > held:  # too little of the batch's lease is left for this message: extend it
                extended = started + LEASE
                taken = await conn.execute(_EXTEND, {"notice_id": item.id, "held": held, "b_until": extended})
                if taken.rowcount == 0:
                    continue  # recorded meanwhile, erased (D3), or claimed by another run once the lease ran out
                held = extended
            done += 1
            if item.email is None or (item.category == "marketing" and item.marketing_opt_out):
                # D3: nobody to write to any more; D4: the customer objected to marketing.
                await conn.execute(_SKIPPED, {"notice_id": item.id, "held": held})
                continue
            try:
                async with asyncio.timeout(SEND_LIMIT.total_seconds()):
                    await send(item.id, item.email, item.subject, item.body)
            except Exception as exc:
                attempts = item.attempts + 1
                log.warning(
                    "notice delivery failed",
                    extra={"notice_id": item.id, "attempts": attempts, "error": type(exc).__name__},
                )
                await conn.execute(
                    _FAILED,
                    {
                        "notice_id": item.id,
                        "held": held,
                        "b_attempts": attempts,
                        "b_next": ctx.system_clock.wall() + backoff(attempts),
                        "b_error": type(exc).__name__,
                    },
                )
                continue
            # Accepted by the server: recorded at once, so a crash from here on re-sends nothing of this notice.
            await conn.execute(
                _SENT,
                {
                    "notice_id": item.id,
                    "held": held,
                    "b_status": ctx.mailer.delivered_status,
                    "b_at": now,
                    "b_attempts": item.attempts + 1,
                },
            )
    return done
