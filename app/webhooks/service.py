"""Applying Stripe events: each event id once (an inbox unique on the id, written in the transaction that
applies the event), in any order (state only moves forward), unknown objects stored and acknowledged."""

from __future__ import annotations

import functools
import logging
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update

from app.audit.service import SYSTEM, changed, record
from app.context import AppContext
from app.db import insert_ignoring_conflict
from app.errors import InvalidEvent
from app.gateways.base import ChargeResult, GatewayError, GatewayUnavailable
from app.gateways.stripe_events import StripeEvent
from app.ids import new_id
from app.models import payments, refunds, webhook_events
from app.payments import corrections
from app.payments import repository as payment_repo
from app.refunds.schemas import to_api as refund_to_api
from app.refunds.service import correction_refund_id, send_corrections, settle_refund
from app.subscriptions import charging
from app.uow import unit_of_work
from policies.refunds import recorded_refund_decision, reservations_released

log = logging.getLogger("billing.webhooks")


async def _locked_subscription_for(conn, intent: dict[str, Any]):  # noqa: ANN001, ANN202
    """The subscription of the payment an intent is about, locked (a payment is locked after its subscription,
    as every writer locks them), or None. The payment is found by the intent's id, else by the idempotency key we
    sent in its metadata (a charge whose answer was lost has no intent id recorded yet)."""
    sub = await charging.lock_subscription_of_payment(conn, by="gateway_payment_id", value=intent.get("id") or "")
    key = (intent.get("metadata") or {}).get("idempotency_key")
    if sub is None and key:
        sub = await charging.lock_subscription_of_payment(conn, by="idempotency_key", value=key)
    return sub


async def _locked_payment_for(conn, intent: dict[str, Any]):  # noqa: ANN001, ANN202
    """(subscription, payment), both locked, subscription first; or None."""
    sub = await _locked_subscription_for(conn, intent)
    return None if sub is None else (sub, await charging.lock_payment_of(conn, sub))


async def _intent_succeeded(conn, ctx: AppContext, intent: dict[str, Any], now) -> str:  # noqa: ANN001
    sub = await _locked_subscription_for(conn, intent)
    if sub is None:
        return "unknown_object"
    # The common case: the purchase of an incomplete subscription completed (e.g. after the customer's
    # authentication), recorded with the payment's lock and pending check in the statement that writes it.
    if await charging.record_purchase_paid(conn, ctx, sub, intent["id"], now) is not None:
        return "applied"
    payment = await charging.lock_payment_of(conn, sub)
    if payment.status == "succeeded":
        return "already_applied"
    # Pending: the charge completed (a renewal or retry whose answer was lost). Failed: the gateway says a charge
    # we had recorded as failed went through after all: a renewal still awaited renews; anything else is recorded
    # and grants nothing.
    await charging.settle_locked(conn, ctx, payment, ChargeResult("succeeded", intent["id"]), now, sub=sub)
    if payment.purpose in ("purchase", "upgrade") and await _correction_booked(conn, payment.id):  # upgrade: C4
        return "refunded_late_success"  # B1: it bought nothing; its refund is sent once this commits
    return "applied" if payment.status == "pending" else "recorded_late_success"


async def _correction_booked(conn, payment_id: str) -> bool:  # noqa: ANN001
    return (
        await conn.execute(
            select(refunds.c.id).where(refunds.c.id == correction_refund_id(payment_id), refunds.c.status == "pending")
        )
    ).first() is not None


# A pending purchase a failure event may be about: by its PaymentIntent, else by the key in the intent's metadata.
_PENDING_PURCHASE = (
    select(payments.c.id)
    .where(
        or_(payments.c.gateway_payment_id == bindparam("intent"), payments.c.idempotency_key == bindparam("key")),
        payments.c.purpose == "purchase",
        payments.c.status == "pending",
    )
    .limit(1)
)


async def _cancel_before_failing(ctx: AppContext, intent: dict[str, Any]) -> str | None:
    """B1: a `payment_intent.payment_failed` is not final (the customer may retry on the same PaymentIntent, and
    Stripe does not deliver events in order: the failure of a first attempt may arrive after a retry succeeded).
    Before a pending purchase is failed, its PaymentIntent is cancelled at the gateway (outside any transaction,
    under the payment's cancellation key): the answer, the intent's own state, decides. `canceled`: it can no longer
    succeed, the purchase fails; `succeeded`: the customer's retry went through, the purchase is paid; `unanswered`:
    it is failed as before, its cancellation left to the `payment_cancellations` job once its lease has run out (a
    success that still comes is a B1 correction: our own failure decision came first). None: not a pending
    purchase."""
    key = (intent.get("metadata") or {}).get("idempotency_key") or ""
    async with ctx.db.read() as conn:
        payment_id = (await conn.execute(_PENDING_PURCHASE, {"intent": intent.get("id") or "", "key": key})).scalar()
    if payment_id is None:
        return None
    try:
        return await ctx.gateway.cancel_payment(intent.get("id") or "", corrections.cancel_key(payment_id))
    except (GatewayUnavailable, GatewayError) as exc:
        log.warning(
            "a failed purchase's PaymentIntent could not be cancelled before failing it",
            extra={"payment_id": payment_id, "error": str(exc)},
        )
        return "unanswered"


async def _intent_failed(
    conn,
    ctx: AppContext,
    intent: dict[str, Any],
    now,  # noqa: ANN001
    gateway_answer: str | None = None,
) -> str:
    if gateway_answer == "succeeded":
        # B1: the intent succeeded at the gateway (the customer's retry): the purchase is paid, whatever the order
        # in which the events arrive; its own payment_intent.succeeded then finds it applied.
        outcome = await _intent_succeeded(conn, ctx, intent, now)
        return "succeeded_at_gateway" if outcome == "applied" else outcome
    found = await _locked_payment_for(conn, intent)
    if found is None:
        return "unknown_object"
    sub, payment = found
    if payment.status != "pending":
        return "already_applied"  # a late failure never undoes a success
    error = intent.get("last_payment_error") or {}
    code = error.get("decline_code") or error.get("code") or "payment_failed"
    await charging.settle_locked(
        conn, ctx, payment, ChargeResult("failed", intent["id"], decline_code=code), now, sub=sub
    )
    if gateway_answer == "canceled":  # cancelled at the gateway already: nothing left to send
        await conn.execute(update(payments).where(payments.c.id == payment.id).values(gateway_cancel_due_at=None))
    elif gateway_answer == "unanswered":  # just sent without an answer: the job sends it again after its lease
        await conn.execute(
            update(payments)
            .where(payments.c.id == payment.id, payments.c.gateway_cancel_due_at.is_not(None))
            .values(gateway_cancel_due_at=ctx.system_clock.wall() + corrections.LEASE)
        )
    return "applied"


_SETTLED_REFUNDS = select(func.coalesce(func.sum(refunds.c.amount), 0)).where(
    refunds.c.payment_id == bindparam("payment_id"), refunds.c.status == "succeeded"
)
_PENDING_REFUNDS = (
    select(refunds.c.id, refunds.c.amount)
    .where(refunds.c.payment_id == bindparam("payment_id"), refunds.c.status == "pending")
    .order_by(refunds.c.created_at, refunds.c.id)
)


async def _charge_refunded(conn, ctx: AppContext, charge: dict[str, Any], now) -> str:  # noqa: ANN001
    """A refund made in Stripe's dashboard is recorded once, keyed by Stripe's refund id, and counts against what
    is left to refund. Our own refunds carry our id in their metadata and are recorded by us already.

    R2: a refund the gateway made is a fact, judged against the refunds the gateway has made (succeeded on the
    books), not against ours still pending, which are only reserved. Once it is recorded, a pending refund of ours
    that no longer fits in what the gateway has left could never be made: it is failed (its reservation released,
    `refund.failed` in the audit log, with the reason, for ops) and never sent again."""
    payment = await payment_repo.by_gateway_id(conn, charge.get("payment_intent") or "", for_update=True)
    if payment is None:
        return "unknown_object"
    listed = (charge.get("refunds") or {}).get("data") or []
    made = [item for item in listed if item.get("status") in ("succeeded", "pending") and item.get("id")]
    # Our pending refunds the gateway lists as made are made: they count as the gateway's, never released.
    ours_made = {(item.get("metadata") or {}).get("billing_refund_id") for item in made} - {None}
    settled = int((await conn.execute(_SETTLED_REFUNDS, {"payment_id": payment.id})).scalar_one())
    recorded, new_refunds = 0, []
    for item in made:
        ours = (item.get("metadata") or {}).get("billing_refund_id")
        known = await conn.execute(
            select(refunds.c.id).where((refunds.c.gateway_refund_id == item["id"]) | (refunds.c.id == (ours or "")))
        )
        if known.first() is not None or item["id"] in {i for i, _ in new_refunds}:
            continue
        amount = int(item.get("amount") or 0)
        decision = recorded_refund_decision(payment.amount, settled, amount)
        if not decision.allowed:  # not a fact the gateway could report: the event is refused whole (400)
            raise InvalidEvent(f"refund {item['id']}: {decision.reason}")
        settled += amount
        new_refunds.append((item["id"], amount))
    if not new_refunds:
        return "already_applied"
    pending = (await conn.execute(_PENDING_REFUNDS, {"payment_id": payment.id})).all()
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
            "source": "gateway",
            "status": "succeeded",
            "gateway_refund_id": gateway_refund_id,
            "failure_reason": None,
            "policy_version": None,
            "created_at": now,
            "updated_at": now,
        }
        await conn.execute(insert(refunds).values(refund))
        await conn.execute(
            update(payments)
            .where(payments.c.id == payment.id)
            .values(refunded_amount=payments.c.refunded_amount + amount, updated_at=now)
        )
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
            events=[("refund.succeeded", refund_to_api(changed(refund)))],
        )
        recorded += 1
    return "applied" if recorded else "already_applied"


async def _dispute_created(conn, ctx: AppContext, dispute: dict[str, Any], now) -> str:  # noqa: ANN001
    """A chargeback: recorded and audited for ops to act on; it changes no subscription by itself."""
    payment = await payment_repo.by_gateway_id(conn, dispute.get("payment_intent") or "")
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
        reason=dispute.get("reason"),
        data={"dispute_id": dispute.get("id"), "amount": dispute.get("amount"), "status": dispute.get("status")},
    )
    return "recorded"


HANDLERS = {
    "payment_intent.succeeded": _intent_succeeded,
    "payment_intent.payment_failed": _intent_failed,
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute_created,
}


class _Duplicate(Exception):
    """The event's id is in the inbox already: the transaction that applied it again is rolled back."""


async def handle_event(ctx: AppContext, event: StripeEvent) -> tuple[bool, str]:
    """Store and apply one verified event; returns (duplicate, outcome).

    The event is applied, then stored in the inbox with its outcome by one `INSERT ... ON CONFLICT DO NOTHING`, in
    the same transaction: the insert is what decides, under concurrency too, whether this delivery is the first.
    When it finds the id there already (a repeat, or a concurrent delivery that committed first), the transaction
    is rolled back whole, so a repeat changes nothing, exactly as if it had been turned away before applying."""
    event_type, obj = event.type, event.object  # validated (app.gateways.stripe_events.parse_event)
    if event_type == "payment_intent.succeeded":
        await ctx.gateway.complete_action(obj.get("id", ""))  # the gateway's own books follow (sandbox; Stripe: no-op)
    handler = HANDLERS.get(event_type)
    answer = None
    if event_type == "payment_intent.payment_failed":
        answer = await _cancel_before_failing(ctx, obj)
        handler = functools.partial(_intent_failed, gateway_answer=answer)
    try:
        async with unit_of_work(ctx) as uow:
            conn, now = uow.conn, uow.now
            outcome = await handler(conn, ctx, obj, now) if handler else "ignored"
            # D3: the payload of a type nothing acts on (`customer.*`, `payment_method.*`: a name, an e-mail) is
            # not kept; its id, type and outcome are, for dedupe.
            stored = await insert_ignoring_conflict(
                conn,
                webhook_events,
                {
                    "id": event.id,
                    "type": event_type,
                    "object_id": event.object_id,
                    "received_at": now,
                    "outcome": outcome,
                    "payload": event.payload if handler else {},
                    "note": None,
                },
                conflict_on=["id"],
            )
            if stored == 0:
                raise _Duplicate
    except _Duplicate:
        return True, "duplicate"
    except Exception:
        # A repeat must be answered as one even if applying it again fails (the first delivery was applied).
        if await _stored(ctx, event.id):
            return True, "duplicate"
        raise
    # B1, once applied and outside the transaction: a failed purchase's PaymentIntent is cancelled at the gateway;
    # a success that bought nothing is refunded (both also retried by their jobs if this does not get through).
    if event_type == "payment_intent.payment_failed" and outcome == "applied" and answer is None:
        await corrections.cancel_at_gateway(ctx, intent_ids=[obj.get("id") or ""])
    elif outcome == "refunded_late_success":
        await send_corrections(ctx, obj.get("id") or "")
    return False, outcome


_STORED = select(webhook_events.c.id).where(webhook_events.c.id == bindparam("event_id"))


async def _stored(ctx: AppContext, event_id: str) -> bool:
    async with ctx.db.read() as conn:
        return (await conn.execute(_STORED, {"event_id": event_id})).first() is not None
