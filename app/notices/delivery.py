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

from app.context import AppContext
from app.invoices.service import receipt_attachments
from app.notices import repository
from app.notices.service import RECEIPT_KEY
from app.uow import unit_of_work
from policies.states import NoticeCategory, NoticeStatus

log = logging.getLogger("billing.notices")
LEASE = _dt.timedelta(minutes=2)
SEND_LIMIT = _dt.timedelta(seconds=30)  # the longest one message may take; a send still running then is given up
MAX_BACKOFF = _dt.timedelta(hours=6)


def backoff(attempts: int) -> _dt.timedelta:
    return min(MAX_BACKOFF, _dt.timedelta(seconds=30 * 2 ** max(0, attempts - 1)))


async def deliver_notices(ctx: AppContext, now: _dt.datetime) -> int:
    wall = ctx.system_clock.wall()
    lease = wall + LEASE
    async with unit_of_work(ctx, now=now) as uow:
        batch = await repository.claim_due(uow.conn, wall=wall, lease_until=lease, limit=ctx.settings.job_batch_size)
    if not batch:
        return 0
    # I1: a mailed receipt carries its payment's invoice as PDF (read before any message is sent).
    attachments = (
        await receipt_attachments(
            ctx,
            [item.dedupe_key.removeprefix(RECEIPT_KEY) for item in batch if item.dedupe_key.startswith(RECEIPT_KEY)],
        )
        if ctx.mailer.delivered_status == NoticeStatus.SENT
        else {}
    )

    # One autocommit connection for the batch: each statement is a single UPDATE, durable as soon as it returns (no
    # BEGIN/COMMIT round trips, no transaction open while SMTP is talked to).
    done = 0
    # One mailer session for the batch, too (over SMTP, one connection).
    async with ctx.db.autocommit() as conn, ctx.mailer.session() as send:
        for item in batch:
            held, started = lease, ctx.system_clock.wall()
            if started + SEND_LIMIT > held:  # too little of the batch's lease is left for this message: extend it
                extended = started + LEASE
                if not await repository.extend_lease(conn, item.id, held, extended):
                    continue  # recorded meanwhile, erased (D3), or claimed by another run once the lease ran out
                held = extended
            done += 1
            if item.email is None or (item.category == NoticeCategory.MARKETING and item.marketing_opt_out):
                # D3: nobody to write to any more; D4: the customer objected to marketing.
                await repository.mark_skipped(conn, item.id, held)
                continue
            try:
                async with asyncio.timeout(SEND_LIMIT.total_seconds()):
                    attached = attachments.get(item.dedupe_key.removeprefix(RECEIPT_KEY))
                    await send(item.id, item.email, item.subject, item.body, *([[attached]] if attached else []))
            except Exception as exc:
                attempts = item.attempts + 1
                log.warning(
                    "notice delivery failed",
                    extra={"notice_id": item.id, "attempts": attempts, "error": type(exc).__name__},
                )
                await repository.mark_failed(
                    conn,
                    item.id,
                    held,
                    attempts=attempts,
                    next_attempt_at=ctx.system_clock.wall() + backoff(attempts),
                    error=type(exc).__name__,
                )
                continue
            # Accepted by the server: recorded at once, so a crash from here on re-sends nothing of this notice.
            await repository.mark_delivered(
                conn, item.id, held, status=ctx.mailer.delivered_status, at=now, attempts=item.attempts + 1
            )
    return done
