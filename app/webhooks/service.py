"""Applying a gateway's events (in the service's terms: app/gateways/base.py, parsed from Stripe's in
app/gateways/stripe_events.py): each event id once (an inbox unique on the id, written in the transaction that
applies the event), in any order (state only moves forward), unknown objects stored and acknowledged."""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.audit.service import SYSTEM, changed, record
from app.context import AppContext
from app.errors import InvalidEvent
from app.gateways.base import (
    ChargeResult,
    DisputeOpened,
    GatewayError,
    GatewayFact,
    GatewayUnavailable,
    PaymentFailed,
    PaymentSucceeded,
    RefundsReported,
)
from app.gateways.stripe_events import StripeEvent
from app.ids import new_id
from app.invoices.service import credit_refund
from app.payments import corrections
from app.payments import repository as payment_repo
from app.refunds.schemas import to_api as refund_to_api
from app.refunds.service import correction_refund_id, send_corrections, settle_refund
from app.subscriptions import charging
from app.uow import unit_of_work
from app.webhooks import repository as repo
from policies.refunds import recorded_refund_decision, reservations_released
from policies.states import PaymentPurpose, PaymentStatus, RefundSource, RefundStatus

log = logging.getLogger("billing.webhooks")


async def _locked_subscription_for(conn: AsyncConnection, news: PaymentSucceeded | PaymentFailed) -> Any:
    """The subscription of the payment the news is about, locked (a payment is locked after its subscription,
    as every writer locks them), or None. The payment is found by the gateway's payment id, else by the idempotency
    key we charged with (a charge whose answer was lost has no gateway payment id recorded yet)."""
    sub = await charging.lock_subscription_of_payment(conn, by="gateway_payment_id", value=news.payment_id)
    if sub is None and news.idempotency_key:
        sub = await charging.lock_subscription_of_payment(conn, by="idempotency_key", value=news.idempotency_key)
    return sub


async def _locked_payment_for(conn: AsyncConnection, news: PaymentFailed) -> tuple[Any, Any] | None:
    """(subscription, payment), both locked, subscription first; or None."""
    sub = await _locked_subscription_for(conn, news)
    return None if sub is None else (sub, await charging.lock_payment_of(conn, sub))


async def _payment_succeeded(
    conn: AsyncConnection, ctx: AppContext, news: PaymentSucceeded | PaymentFailed, now: _dt.datetime
) -> str:
    sub = await _locked_subscription_for(conn, news)
    if sub is None:
        return "unknown_object"
    # The common case: the purchase of an incomplete subscription completed (e.g. after the customer's
    # authentication), recorded with the payment's lock and pending check in the statement that writes it.
    if await charging.record_purchase_paid(conn, ctx, sub, news.payment_id, now) is not None:
        return "applied"
    payment = await charging.lock_payment_of(conn, sub)
    if payment.status == PaymentStatus.SUCCEEDED:
        return "already_applied"
    # Pending: the charge completed (a renewal or retry whose answer was lost). Failed: the gateway says a charge
    # we had recorded as failed went through after all: a renewal still awaited renews; anything else is recorded
    # and grants nothing.
    await charging.settle_locked(conn, ctx, payment, ChargeResult("succeeded", news.payment_id), now, sub=sub)
    if payment.purpose in (PaymentPurpose.PURCHASE, PaymentPurpose.UPGRADE) and await repo.refund_pending(
        conn, correction_refund_id(payment.id)
    ):
        return "refunded_late_success"  # B1: it bought nothing; its refund is sent once this commits
    return "applied" if payment.status == PaymentStatus.PENDING else "recorded_late_success"


async def _cancel_before_failing(ctx: AppContext, news: PaymentFailed) -> str | None:
    """B1: a reported failure is not final (at Stripe, the customer may retry on the same PaymentIntent, and events
    are not delivered in order: the failure of a first attempt may arrive after a retry succeeded). Before a
    pending purchase is failed, its gateway payment is cancelled (outside any transaction, under the payment's
    cancellation key): the answer, the payment's own state, decides. `canceled`: it can no longer succeed, the
    purchase fails; `succeeded`: the customer's retry went through, the purchase is paid; `unanswered`: it is
    failed as before, its cancellation left to the `payment_cancellations` job once its lease has run out (a success
    that still comes is a B1 correction: our own failure decision came first). None: not a pending purchase."""
    async with ctx.db.read() as conn:
        payment_id = await repo.pending_purchase(conn, news.payment_id, news.idempotency_key or "")
    if payment_id is None:
        return None
    try:
        return await ctx.gateway.cancel_payment(news.payment_id, corrections.cancel_key(payment_id))
    except (GatewayUnavailable, GatewayError) as exc:
        log.warning(
            "a failed purchase's PaymentIntent could not be cancelled before failing it",
            extra={"payment_id": payment_id, "error": str(exc)},
        )
        return "unanswered"


async def _payment_failed(
    conn: AsyncConnection,
    ctx: AppContext,
    news: PaymentFailed,
    now: _dt.datetime,
    gateway_answer: str | None = None,
) -> str:
    if gateway_answer == "succeeded":
        # B1: the payment succeeded at the gateway (the customer's retry): the purchase is paid, whatever the order
        # in which the events arrive; its own success event then finds it applied.
        outcome = await _payment_succeeded(conn, ctx, news, now)
        return "succeeded_at_gateway" if outcome == "applied" else outcome
    found = await _locked_payment_for(conn, news)
    if found is None:
        return "unknown_object"
    sub, payment = found
    if payment.status != PaymentStatus.PENDING:
        return "already_applied"  # a late failure never undoes a success
    await charging.settle_locked(
        conn, ctx, payment, ChargeResult("failed", news.payment_id, decline_code=news.decline_code), now, sub=sub
    )
    if gateway_answer == "canceled":  # cancelled at the gateway already: nothing left to send
        await repo.cancellation_confirmed(conn, payment.id)
    elif gateway_answer == "unanswered":  # just sent without an answer: the job sends it again after its lease
        await repo.cancellation_due_at(conn, payment.id, ctx.system_clock.wall() + corrections.LEASE)
    return "applied"


async def _refunds_reported(conn: AsyncConnection, ctx: AppContext, report: RefundsReported, now: _dt.datetime) -> str:
    """A refund made in Stripe's dashboard is recorded once, keyed by Stripe's refund id, and counts against what
    is left to refund. Our own refunds carry our id in their metadata and are recorded by us already.

    R2: a refund the gateway made is a fact, judged against the refunds the gateway has made (succeeded on the
    books), not against ours still pending, which are only reserved. Once it is recorded, a pending refund of ours
    that no longer fits in what the gateway has left could never be made: it is failed (its reservation released,
    `refund.failed` in the audit log, with the reason, for ops) and never sent again."""
    payment = await payment_repo.by_gateway_id(conn, report.payment_id, for_update=True)
    if payment is None:
        return "unknown_object"
    # Our pending refunds the gateway lists as made are made: they count as the gateway's, never released.
    ours_made = {item.ours for item in report.made} - {None}
    settled = await repo.settled_refunds(conn, payment.id)
    recorded, new_refunds = 0, list[tuple[str, int]]()
    for item in report.made:
        if await repo.refund_known(conn, item.refund_id, item.ours) or item.refund_id in {i for i, _ in new_refunds}:
            continue
        decision = recorded_refund_decision(payment.amount, settled, item.amount)
        if not decision.allowed:  # not a fact the gateway could report: the event is refused whole (400)
            raise InvalidEvent(f"refund {item.refund_id}: {decision.reason}")
        settled += item.amount
        new_refunds.append((item.refund_id, item.amount))
    if not new_refunds:
        return "already_applied"
    pending = await repo.pending_refunds(conn, payment.id)
    made_pending = sum(r.amount for r in pending if r.id in ours_made)
    released = reservations_released(
        payment.amount, settled + made_pending, [(r.id, r.amount) for r in pending if r.id not in ours_made]
    )
    for refund_id in released:
        await settle_refund(
            conn,
            ctx,
            refund_id,
            None,
            (
                f"released: Stripe refunded {sum(a for _, a in new_refunds)} of this payment outside the service "
                f"({', '.join(i for i, _ in new_refunds)}); what is left there cannot hold this refund any more, so it "
                f"is not sent again (R2: review the payment)"
            ),
            now,
        )
        log.warning(
            "a pending refund was released: a refund made at the gateway left no room for it",
            extra={"refund_id": refund_id, "payment_id": payment.id},
        )
    for gateway_refund_id, amount in new_refunds:
        refund_id = new_id("re")
        refund = {
            "id": refund_id,
            "payment_id": payment.id,
            "customer_id": payment.customer_id,
            "amount": amount,
            "currency": payment.currency,
            "reason": "refunded in Stripe's dashboard",
            "created_by": "stripe",
            "source": RefundSource.GATEWAY,
            "status": RefundStatus.SUCCEEDED,
            "gateway_refund_id": gateway_refund_id,
            "failure_reason": None,
            "credit_note_id": None,
            "policy_version": None,
            "created_at": now,
            "updated_at": now,
        }
        await repo.add_gateway_refund(conn, refund, now)
        note = await credit_refund(conn, refund_id, now)  # I2: in the transaction recording the refund
        refund["credit_note_id"] = None if note is None else note["id"]
        await record(
            conn,
            SYSTEM,
            "refund.recorded_from_gateway",
            now,
            subject_type="refund",
            subject_id=refund_id,
            customer_id=payment.customer_id,
            reason="refunded in Stripe's dashboard",
            data={
                "payment_id": payment.id,
                "amount": amount,
                "gateway_refund_id": gateway_refund_id,
                "released_refund_ids": list(released),
            },
            events=[
                ("refund.succeeded", refund_to_api(changed(refund))),
                *([] if note is None else [("credit_note.issued", note)]),
            ],
        )
        recorded += 1
    return "applied" if recorded else "already_applied"


async def _dispute_opened(conn: AsyncConnection, ctx: AppContext, dispute: DisputeOpened, now: _dt.datetime) -> str:
    """A chargeback: recorded and audited for ops to act on; it changes no subscription by itself."""
    payment = await payment_repo.by_gateway_id(conn, dispute.payment_id)
    if payment is None:
        return "unknown_object"
    await record(
        conn,
        SYSTEM,
        "payment.disputed",
        now,
        subject_type="payment",
        subject_id=payment.id,
        customer_id=payment.customer_id,
        reason=dispute.reason,
        data={"dispute_id": dispute.dispute_id, "amount": dispute.amount, "status": dispute.status},
    )
    return "recorded"


Handler = Callable[[AsyncConnection, AppContext, Any, _dt.datetime], Awaitable[str]]
HANDLERS: dict[type[GatewayFact], Handler] = {
    PaymentSucceeded: _payment_succeeded,
    PaymentFailed: _payment_failed,
    RefundsReported: _refunds_reported,
    DisputeOpened: _dispute_opened,
}


class _Duplicate(Exception):
    """The event's id is in the inbox already: the transaction that applied it again is rolled back."""


async def handle_event(ctx: AppContext, event: StripeEvent) -> tuple[bool, str]:
    """Store and apply one verified event; returns (duplicate, outcome).

    An event the inbox holds already is answered as a duplicate before anything else, the gateway included (the
    calls made before the transaction below: the gateway's own books following a success, a failed purchase's
    cancellation). Otherwise the event is applied, then stored in the inbox with its outcome by one `INSERT ... ON
    CONFLICT DO NOTHING`, in the same transaction: the insert is what decides, under concurrency too, whether this
    delivery is the first. When it finds the id there already (a concurrent delivery that committed first), the
    transaction is rolled back whole, so a repeat changes nothing, exactly as if it had been turned away before
    applying."""
    fact = event.fact  # validated, in the service's terms (app.gateways.stripe_events.parse_event)
    answer = None
    if isinstance(fact, PaymentSucceeded | PaymentFailed):
        if await _stored(ctx, event.id):  # a repeat calls the gateway for nothing
            return True, "duplicate"
        if isinstance(fact, PaymentSucceeded):
            await ctx.gateway.complete_action(fact.payment_id)  # the gateway's books follow (sandbox; Stripe: no-op)
        else:
            answer = await _cancel_before_failing(ctx, fact)
    try:
        async with unit_of_work(ctx) as uow:
            conn, now = uow.conn, uow.now
            if isinstance(fact, PaymentFailed):
                outcome = await _payment_failed(conn, ctx, fact, now, gateway_answer=answer)
            elif fact is not None:
                outcome = await HANDLERS[type(fact)](conn, ctx, fact, now)
            else:
                outcome = "ignored"
            # D3: the payload of a type nothing acts on (`customer.*`, `payment_method.*`: a name, an e-mail) is
            # not kept; its id, type and outcome are, for dedupe.
            stored = await repo.store_event(
                conn,
                {
                    "id": event.id,
                    "type": event.type,
                    "object_id": event.object_id,
                    "received_at": now,
                    "outcome": outcome,
                    "payload": event.payload if fact is not None else {},
                    "note": None,
                },
            )
            if not stored:
                raise _Duplicate
    except _Duplicate:
        return True, "duplicate"
    except Exception:
        # A repeat must be answered as one even if applying it again fails (the first delivery was applied).
        if await _stored(ctx, event.id):
            return True, "duplicate"
        raise
    # B1, once applied and outside the transaction: a failed purchase's payment is cancelled at the gateway; a
    # success that bought nothing is refunded (both also retried by their jobs if this does not get through).
    if isinstance(fact, PaymentFailed) and outcome == "applied" and answer is None:
        await corrections.cancel_at_gateway(ctx, intent_ids=[fact.payment_id])
    elif outcome == "refunded_late_success" and isinstance(fact, PaymentSucceeded | PaymentFailed):
        await send_corrections(ctx, fact.payment_id)
    return False, outcome


async def _stored(ctx: AppContext, event_id: str) -> bool:
    async with ctx.db.read() as conn:
        return await repo.event_stored(conn, event_id)
