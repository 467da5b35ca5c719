"""R2: discretionary refunds, by ops staff only, with a reason, never more than what is left of the payment.

The amount is reserved on the payment (`refunded_amount`) under the payment's row lock before the gateway is
called, so concurrent refunds can never exceed the payment; the gateway call carries our refund id as its
idempotency key; a refused refund releases its reservation. A refund never changes the subscription, and nothing
in the service ever refunds by itself.

B1 corrections are the one exception to "nothing refunds by itself": a payment that succeeded for a purchase that no
longer waited for it bought nothing and is refunded in full at once (`book_correction`, in the transaction that
records the success; `send_refund` after it). Its id, also the gateway's idempotency key, is derived from the
payment's (`correction_refund_id`), so it can be booked only once and sent any number of times.

A refund whose gateway call got no answer stays `pending` and is sent again, with the same key, by the retry job.
"Got no answer" is measured in real time (`gateway_attempted_at`, from the system clock, like the work leases),
never on the business clock: the sandbox clock can move days while a call is still under way.

A refund asked for with an `Idempotency-Key` records which request made it (`request_key`: caller, key, payment).
If that request fails after its reservation committed (the database lost before the gateway's answer is recorded),
its key is kept for the retry (app/idempotency.py, `resumable`), and the retry finds this refund instead of
reserving another: it sends it again with the same gateway key (which never refunds twice) and records the answer.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from app.audit.service import SYSTEM, changed, record
from app.auth import Principal
from app.context import AppContext
from app.errors import DomainError, PaymentNotRefundable, refuse_unless
from app.gateways.base import GatewayError, GatewayUnavailable, RefundResult
from app.idempotency import resumable
from app.ids import new_id
from app.invoices.service import credit_refund
from app.notices import templates
from app.notices.service import NewNotice, create_notices
from app.payments import repository as payment_repo
from app.payments import steps
from app.refunds import repository
from app.refunds.repository import RefundedPayment, RefundRow, RefundToSend
from app.refunds.schemas import RefundCreate, to_api
from app.uow import UnitOfWork
from policies import Decision, SuccessOutcome, refund_decision
from policies.states import PaymentStatus, RefundSource, RefundStatus

log = logging.getLogger("billing.refunds")
NO_ANSWER_AFTER = _dt.timedelta(minutes=5)  # real time after a gateway call before its refund is sent again


class RefundFailed(DomainError):
    code = "refund_failed"


class Refundable(Protocol):
    """What R2 asks of a payment before it is refunded."""

    amount: int
    refunded_amount: int


class CorrectedSubscription(Protocol):
    """What a B1 correction says of the subscription its payment was for."""

    plan_name: str
    status: str


def refund_check(principal: Principal, payment: Refundable, body: RefundCreate) -> Decision:
    """R2: whether `principal` may refund `body` of `payment` as it stands: ops only, with a reason, never more than
    what is left of it. The console previews with it; `create_refund` asks it again under the payment's lock."""
    return refund_decision(principal.role, payment.amount, payment.refunded_amount, body.amount, body.reason)


async def _reserve(
    uow: UnitOfWork, principal: Principal, payment_id: str, body: RefundCreate, request_key: str | None
) -> tuple[str, RefundedPayment, RefundRow | None]:
    """Step 1 of a refund: the amount reserved on the payment (locked) and the refund written pending, with its id
    as the gateway's idempotency key; or, for the same keyed request again (`request_key`), the refund it made."""
    conn, ctx, now = uow.conn, uow.ctx, uow.now
    principal.require_ops()
    await payment_repo.get_visible(conn, principal, payment_id)
    payment = await repository.lock_payment(conn, payment_id)
    if request_key is not None:  # the same request again, after it failed partway: its refund, not a second one
        made = await repository.by_request_key(conn, request_key)
        if made is not None:
            return made.id, payment, made
    if payment.status != PaymentStatus.SUCCEEDED:
        raise PaymentNotRefundable(f"payment {payment.id} is {payment.status}")
    left = payment.amount - payment.refunded_amount
    decision = refund_check(principal, payment, body)
    refuse_unless(decision, f"{decision.reason} ({left} {payment.currency} left to refund)", refundable=left)
    policy = ctx.policies.at(now)
    refund_id = new_id("re")
    await repository.add(
        conn,
        {
            "id": refund_id,
            "payment_id": payment.id,
            "customer_id": payment.customer_id,
            "amount": body.amount,
            "currency": payment.currency,
            "reason": body.reason,
            "created_by": principal.sub,
            "source": RefundSource.OPS,
            "status": RefundStatus.PENDING,
            "gateway_refund_id": None,
            "failure_reason": None,
            "credit_note_id": None,
            "policy_version": policy.version,
            "created_at": now,
            "updated_at": now,
            "gateway_attempted_at": ctx.system_clock.wall(),  # the gateway is called as soon as this commits
            "request_key": request_key,
        },
    )
    await repository.reserve(conn, payment.id, body.amount, now)
    await record(
        conn,
        principal,
        "refund.requested",
        now,
        subject_type="refund",
        subject_id=refund_id,
        customer_id=payment.customer_id,
        reason=body.reason,
        policy_version=policy.version,
        data={
            "payment_id": payment.id,
            "amount": body.amount,
            "currency": payment.currency,
            "refunded_before": payment.refunded_amount,
            "paid": payment.amount,
        },
    )
    return refund_id, payment, None


async def settle_refund(
    conn: AsyncConnection,
    ctx: AppContext,
    refund_id: str,
    result: RefundResult | None,
    error: str | None,
    now: _dt.datetime,
    actor: Principal = SYSTEM,
) -> None:
    refund = await repository.lock(conn, refund_id)
    if refund.status != RefundStatus.PENDING:
        return
    # the gateway made it, or took it and will make it: either way the money is the customer's again
    if result is not None and result.status in (RefundStatus.SUCCEEDED, RefundStatus.PENDING):
        await repository.mark_succeeded(conn, refund_id, result.refund_id, now)
        note = await credit_refund(conn, refund_id, now)  # I2: in the transaction recording the success
        await record(
            conn,
            actor,
            "refund.succeeded",
            now,
            subject_type="refund",
            subject_id=refund_id,
            customer_id=refund.customer_id,
            data={"amount": refund.amount, "payment_id": refund.payment_id},
            events=[
                (
                    "refund.succeeded",
                    to_api(
                        changed(
                            refund,
                            status=RefundStatus.SUCCEEDED,
                            gateway_refund_id=result.refund_id,
                            updated_at=now,
                            credit_note_id=None if note is None else note["id"],
                        )
                    ),
                ),
                *([] if note is None else [("credit_note.issued", note)]),
            ],
        )
        return
    await repository.mark_failed(conn, refund_id, error or "refused by the gateway", now)
    await repository.release(conn, refund.payment_id, refund.amount, now)
    await record(
        conn,
        actor,
        "refund.failed",
        now,
        subject_type="refund",
        subject_id=refund_id,
        customer_id=refund.customer_id,
        data={"amount": refund.amount, "error": error},
    )


def correction_refund_id(payment_id: str) -> str:
    """B1: the one correction refund a payment can have; also its idempotency key at the gateway."""
    return f"re_b1_{payment_id}"


async def book_correction(
    conn: AsyncConnection,
    ctx: AppContext,
    sub: CorrectedSubscription,
    payment: RefundedPayment,
    outcome: SuccessOutcome,
    now: _dt.datetime,
) -> str | None:
    """B1: reserve the full refund of a payment that bought nothing (`outcome`: `late_success` said `refund`), in
    the transaction that records its success (the payment locked): a pending refund of source `correction` by the
    system, the customer's notice and the audit event. Sent by `send_refund` once this commits, or by
    `retry_pending_refunds` if that never happens. Returns the refund id, or None when it was booked before."""
    refund_id = correction_refund_id(payment.id)
    booked = await repository.add_once(
        conn,
        {
            "id": refund_id,
            "payment_id": payment.id,
            "customer_id": payment.customer_id,
            "amount": outcome.refund_amount,
            "currency": payment.currency,
            "reason": outcome.reason,
            "created_by": SYSTEM.sub,
            "source": RefundSource.CORRECTION,
            "status": RefundStatus.PENDING,
            "gateway_refund_id": None,
            "failure_reason": None,
            "credit_note_id": None,
            "policy_version": ctx.policies.at(now).version,
            "created_at": now,
            "updated_at": now,
            "gateway_attempted_at": ctx.system_clock.wall(),
        },
    )
    if not booked:
        return None
    await repository.reserve(conn, payment.id, outcome.refund_amount, now)
    subject, body = templates.payment_refunded(sub.plan_name, outcome.refund_amount, payment.currency)
    await create_notices(
        conn,
        [NewNotice(payment.customer_id, "payment_refunded", f"payment_refunded:{payment.id}", subject, body)],
        now,
        ctx.system_clock.wall(),
    )
    await record(
        conn,
        SYSTEM,
        "refund.correction_requested",
        now,
        subject_type="refund",
        subject_id=refund_id,
        customer_id=payment.customer_id,
        reason=outcome.reason,
        policy_version=ctx.policies.at(now).version,
        data={
            "payment_id": payment.id,
            "amount": outcome.refund_amount,
            "currency": payment.currency,
            "rule": outcome.rule,
            "subscription_id": payment.subscription_id,
            "subscription_status": sub.status,
        },
    )
    return refund_id


async def _refund_at_gateway(
    ctx: AppContext, gateway_payment_id: str, amount: int, refund_id: str
) -> tuple[RefundResult | None, str | None]:
    """Step 2 of a refund: the gateway asked, outside any transaction, with the refund id as its idempotency key;
    its result, or its refusal. `GatewayUnavailable` (no answer) goes to the caller: the refund stays pending."""
    try:
        return await steps.call(ctx.gateway.refund, gateway_payment_id, amount, idempotency_key=refund_id), None
    except GatewayError as exc:
        return None, exc.detail


async def _settle(uow: UnitOfWork, refund_id: str, result: RefundResult | None, error: str | None) -> None:
    """Step 3 of a refund sent by the service itself (a B1 correction, a retry): the gateway's answer recorded
    while the refund is pending."""
    await settle_refund(uow.conn, uow.ctx, refund_id, result, error, uow.now)


async def _settle_requested(
    uow: UnitOfWork, refund_id: str, result: RefundResult | None, error: str | None, actor: Principal
) -> RefundRow:
    """Step 3 of a refund asked by ops: the answer recorded by `actor`; the refund afterwards."""
    await settle_refund(uow.conn, uow.ctx, refund_id, result, error, uow.now, actor)
    return await repository.get(uow.conn, refund_id)


async def send_refund(ctx: AppContext, refund_id: str, gateway_payment_id: str, amount: int) -> None:
    """Ask the gateway for a refund reserved already (outside any transaction) and record its answer. No answer:
    it stays pending and `retry_pending_refunds` sends it again with the same key."""
    try:
        result, error = await _refund_at_gateway(ctx, gateway_payment_id, amount, refund_id)
    except GatewayUnavailable:
        log.warning("refund got no answer from the gateway; it will be retried", extra={"refund_id": refund_id})
        return
    await steps.settle(ctx, _settle, refund_id, result, error)


async def send_corrections(ctx: AppContext, gateway_payment_id: str) -> None:
    """B1: send the correction refund booked for the payment of this PaymentIntent, if one is still pending."""
    async with ctx.db.read() as conn:
        due = await repository.pending_corrections(conn, gateway_payment_id)
    for item in due:
        await send_refund(ctx, item.id, item.gateway_payment_id, item.amount)


def _request_key(caller: str, key: str, payment_id: str) -> str:
    """R2: the refund request made with this Idempotency-Key by this caller for this payment (see module doc)."""
    return hashlib.sha256(f"{caller}\0{key}\0{payment_id}".encode()).hexdigest()


async def create_refund(ctx: AppContext, principal: Principal, payment_id: str, body: RefundCreate) -> RefundRow:
    """R2, in the three steps of app/payments/steps.py: reserve, call the gateway, settle."""
    keyed = resumable()  # a repeat with the same key completes this refund (module docstring)
    request_key = None if keyed is None else _request_key(keyed.caller, keyed.key, payment_id)
    refund_id, payment, made = await steps.reserve(ctx, _reserve, principal, payment_id, body, request_key)
    if made is not None and made.status != RefundStatus.PENDING:  # settled by the first attempt, or the retry job
        if made.status == RefundStatus.FAILED:
            raise RefundFailed(f"the gateway refused the refund: {made.failure_reason}", refund_id=refund_id)
        return made
    try:
        result, error = await _refund_at_gateway(ctx, payment.gateway_payment_id or "", body.amount, refund_id)
    except GatewayUnavailable:
        # No answer: the refund may or may not have happened. It stays `pending`, its amount reserved, and
        # `retry_pending_refunds` repeats the call with the same idempotency key; the caller gets the pending
        # refund (and a repeated request with the same Idempotency-Key gets it again, never a second refund).
        log.warning("refund got no answer from the gateway; it will be retried", extra={"refund_id": refund_id})
        async with ctx.db.read() as conn:
            return await repository.get(conn, refund_id)
    row = await steps.settle(ctx, _settle_requested, refund_id, result, error, principal)
    if row.status == RefundStatus.FAILED:
        raise RefundFailed(f"the gateway refused the refund: {row.failure_reason}", refund_id=refund_id)
    return row


async def _claim_unanswered(uow: UnitOfWork) -> tuple[Sequence[RefundToSend], _dt.datetime]:
    """Pending refunds whose last gateway call is `NO_ANSWER_AFTER` old in real time, leased to this run: their mark
    is set again before they are re-sent, so another run (another replica) leaves them alone for as long again
    (app/claims.py: taken as every scheduled job takes its work). Returns them and the mark. Step 1 of the retry
    job."""
    wall = uow.wall()
    due = await repository.claim_unanswered(
        uow.conn, answered_after=wall - NO_ANSWER_AFTER, mark=wall, limit=uow.ctx.settings.job_batch_size
    )
    return due, wall


async def retry_pending_refunds(ctx: AppContext, now: _dt.datetime) -> int:
    """Scheduled (R2): refunds whose gateway call got no answer (5 minutes on, in real time) are sent again with
    the same key; the gateway answers a repeat with its first result, so a refund is never made twice."""
    done = 0
    due, claimed = await steps.reserve(ctx, _claim_unanswered, now=now)
    for item in due:
        # Just before each call the mark is moved to the real time of that call, provided this run still holds it:
        # a long batch (a slow gateway) never sends a refund whose mark another run has taken over meanwhile.
        async with ctx.db.autocommit() as conn:
            held = await repository.remark(conn, item.id, claimed, ctx.system_clock.wall())
        if not held:
            continue  # settled meanwhile, or taken over by another run after this batch's mark grew old
        try:
            result, error = await _refund_at_gateway(ctx, item.gateway_payment_id, item.amount, item.id)
        except DomainError:
            continue  # still unavailable: tried again once its mark is NO_ANSWER_AFTER old
        await steps.settle(ctx, _settle, item.id, result, error, now=now)
        done += 1
    return done
