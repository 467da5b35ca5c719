"""B1: a purchase that failed or was abandoned has its PaymentIntent cancelled at the gateway, so that it can no
longer succeed; one that succeeds all the same is refunded in full (`app.refunds.service.book_correction`).

Whoever fails or abandons a purchase whose PaymentIntent waited for the customer's action (the expiry job, a
cancellation; a termination or erasure too; the failure webhook cancels first and lets the answer decide, see
`app.webhooks.service._cancel_before_failing`) marks its payment in that transaction
(`payments.gateway_cancel_due_at`, real time) and, but for termination and erasure (left to the job), calls
`cancel_at_gateway` for it once the transaction has committed: the gateway is called outside any transaction.
The mark stays until the gateway has answered, so a cancellation that got no answer (or a crash before the call) is
not lost: the `payment_cancellations` job sends it again. Each call first moves the mark on by `LEASE` (claimed
under SKIP LOCKED on PostgreSQL), so two runs never send it at once. The cancellation carries a key derived from
the payment; the gateway answers a repeat, or an intent canceled or declined already, `canceled`. If it answers
`succeeded`, the customer completed the payment before the cancellation reached it: the success is recorded, and as
the purchase no longer waits for it, it is refunded in full at once (B1).

A cancellation the gateway refuses (a `GatewayError`: a request or configuration problem, not an outage) is tried
again too, but not forever: after `MAX_REFUSALS` refusals (an hour at one try per `LEASE`) its mark is dropped and
`payment.cancel_failed` is written to the audit log for ops. That is safe: a success that still comes is refunded
(B1). Pending cancellations show as `billing_due_work{job="payment_cancellations"}` (app/health/backlog.py).
"""

from __future__ import annotations

import datetime as _dt
import logging

from app.audit.service import SYSTEM, record
from app.context import AppContext
from app.gateways.base import ChargeResult, GatewayError, GatewayUnavailable
from app.payments import repository, steps
from app.payments.repository import CancellationRow
from app.refunds.service import send_corrections
from app.subscriptions import charging
from app.uow import UnitOfWork

log = logging.getLogger("billing.payments")
LEASE = _dt.timedelta(minutes=5)  # real time a claimed cancellation is left alone before it is sent again
MAX_REFUSALS = 12  # refusals (GatewayError) after which a cancellation is given up and left to ops


def cancel_key(payment_id: str) -> str:
    return f"cancel:{payment_id}"


async def cancel_at_gateway(
    ctx: AppContext, *, payment_ids: list[str] | None = None, intent_ids: list[str] | None = None
) -> int:
    """B1: cancel at the gateway the PaymentIntents of marked payments that are due (only those of `payment_ids`,
    or of these PaymentIntents `intent_ids`, if given); returns how many the gateway answered. One without an
    answer keeps its mark and is due again after `LEASE`. The three steps of app/payments/steps.py: claim the
    marks, call the gateway for each, settle each answer."""
    if payment_ids == [] or intent_ids == []:
        return 0
    due, lease = await steps.reserve(ctx, _claim_due, payment_ids, intent_ids)
    answered = 0
    for item in due:
        try:
            answer = await steps.call(ctx.gateway.cancel_payment, item.gateway_payment_id, cancel_key(item.id))
        except GatewayUnavailable as exc:
            log.warning(
                "a PaymentIntent could not be cancelled; it will be tried again",
                extra={"payment_id": item.id, "error": str(exc)},
            )
            continue
        except GatewayError as exc:
            if await steps.settle(ctx, _refused, item.id, lease, str(exc)):
                log.error(
                    "a PaymentIntent cancellation was given up after repeated refusals; see payment.cancel_failed",
                    extra={"payment_id": item.id, "error": str(exc)},
                )
            continue
        await steps.settle(ctx, _settle_cancellation, item, answer, lease)
        if answer == "succeeded":
            await send_corrections(ctx, item.gateway_payment_id)
        answered += 1
    return answered


async def _claim_due(
    uow: UnitOfWork, payment_ids: list[str] | None, intent_ids: list[str] | None
) -> tuple[list[CancellationRow], _dt.datetime]:
    """Step 1: the due marks of these payments (all, if neither is given), moved on by `LEASE` (SKIP LOCKED on
    PostgreSQL)."""
    wall = uow.wall()
    lease = wall + LEASE
    due = await repository.claim_cancellations(
        uow.conn,
        wall=wall,
        lease_until=lease,
        limit=uow.ctx.settings.job_batch_size,
        postgres=uow.ctx.db.is_postgres,
        payment_ids=payment_ids,
        intent_ids=intent_ids,
    )
    return due, lease


async def _settle_cancellation(uow: UnitOfWork, item: CancellationRow, answer: str, lease: _dt.datetime) -> None:
    """Step 3: the gateway answered; the mark is cleared (if this run still holds it)."""
    conn = uow.conn
    if answer == "succeeded":
        # Too late: the customer completed it first. Recorded as the webhook would (it then finds it settled);
        # the purchase no longer waits for it, so it is refunded in full (B1).
        locked = await charging.lock_for_settlement(conn, by="id", value=item.id)
        if locked is None:
            raise LookupError(f"no payment {item.id!r}")
        sub, payment = locked
        await charging.settle_locked(
            conn, uow.ctx, payment, ChargeResult("succeeded", item.gateway_payment_id), uow.now, sub=sub
        )
    await repository.clear_cancel_mark(conn, item.id, lease)


async def _refused(uow: UnitOfWork, payment_id: str, lease: _dt.datetime, error: str) -> bool:
    """Step 3 of a refusal: the gateway refused a cancellation: counted; once it has refused `MAX_REFUSALS` times,
    the cancellation is given up (its mark dropped, so the job stops sending it) and `payment.cancel_failed` is
    audited for ops (True)."""
    conn = uow.conn
    row = await repository.count_cancel_refusal(conn, payment_id, lease)
    if row is None:
        return False  # settled meanwhile, or taken over by another run
    if row.gateway_cancel_refusals < MAX_REFUSALS:
        log.warning(
            "the gateway refused to cancel a PaymentIntent; it will be tried again",
            extra={"payment_id": payment_id, "error": error, "refusals": row.gateway_cancel_refusals},
        )
        return False
    await repository.drop_cancel_mark(conn, payment_id)
    await record(
        conn,
        SYSTEM,
        "payment.cancel_failed",
        uow.now,
        subject_type="payment",
        subject_id=payment_id,
        customer_id=row.customer_id,
        reason="the gateway refused to cancel the PaymentIntent; given up",
        data={
            "gateway_payment_id": row.gateway_payment_id,
            "refusals": row.gateway_cancel_refusals,
            "error": error[:500],
        },
    )
    return True


async def cancel_abandoned_payments(ctx: AppContext, now: _dt.datetime) -> int:
    """Scheduled (B1): cancellations at the gateway that got no answer, or were never sent (a crash), are sent
    again."""
    return await cancel_at_gateway(ctx)
