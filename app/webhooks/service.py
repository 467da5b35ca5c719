"""Applying Stripe events: each event id once (an inbox unique on the id, written in the transaction that
applies the event), in any order (state only moves forward), unknown objects stored and acknowledged."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, insert, select, update

from app.audit.service import SYSTEM, record
from app.context import AppContext
from app.db import insert_ignoring_conflict
from app.errors import InvalidEvent
from app.gateways.base import ChargeResult
from app.gateways.stripe_events import StripeEvent
from app.ids import new_id
from app.models import payments, refunds, webhook_events
from app.payments import corrections
from app.payments import repository as payment_repo
from app.refunds.service import correction_refund_id, send_corrections
from app.subscriptions import charging
from app.uow import unit_of_work
from policies.refunds import recorded_refund_decision


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
    if payment.purpose == "purchase" and await _correction_booked(conn, payment.id):
        return "refunded_late_success"  # B1: it bought nothing; its refund is sent once this commits
    return "applied" if payment.status == "pending" else "recorded_late_success"


async def _correction_booked(conn, payment_id: str) -> bool:  # noqa: ANN001
    return (await conn.execute(select(refunds.c.id).where(
        refunds.c.id == correction_refund_id(payment_id), refunds.c.status == "pending"))).first() is not None


async def _intent_failed(conn, ctx: AppContext, intent: dict[str, Any], now) -> str:  # noqa: ANN001
    found = await _locked_payment_for(conn, intent)
    if found is None:
        return "unknown_object"
    sub, payment = found
    if payment.status != "pending":
        return "already_applied"  # a late failure never undoes a success
    error = intent.get("last_payment_error") or {}
    code = error.get("decline_code") or error.get("code") or "payment_failed"
    await charging.settle_locked(conn, ctx, payment, ChargeResult("failed", intent["id"], decline_code=code), now,
                                 sub=sub)
    return "applied"


async def _charge_refunded(conn, ctx: AppContext, charge: dict[str, Any], now) -> str:  # noqa: ANN001
    """A refund made in Stripe's dashboard is recorded once, keyed by Stripe's refund id, and counts against what
    is left to refund. Our own refunds carry our id in their metadata and are recorded by us already."""
    payment = await payment_repo.by_gateway_id(conn, charge.get("payment_intent") or "", for_update=True)
    if payment is None:
        return "unknown_object"
    recorded, refunded = 0, payment.refunded_amount
    for item in (charge.get("refunds") or {}).get("data") or []:
        if item.get("status") not in ("succeeded", "pending") or not item.get("id"):
            continue
        ours = (item.get("metadata") or {}).get("billing_refund_id")
        known = await conn.execute(select(refunds.c.id).where(
            (refunds.c.gateway_refund_id == item["id"]) | (refunds.c.id == (ours or ""))))
        if known.first() is not None:
            continue
        amount = int(item.get("amount") or 0)
        decision = recorded_refund_decision(payment.amount, refunded, amount)
        if not decision.allowed:  # the event is refused whole (400): the transaction rolls back
            raise InvalidEvent(f"refund {item['id']}: {decision.reason}")
        refunded += amount
        refund_id = new_id("re")
        await conn.execute(insert(refunds).values(
            id=refund_id, payment_id=payment.id, customer_id=payment.customer_id, amount=amount,
            currency=payment.currency, reason="refunded in Stripe's dashboard", created_by="stripe",
            source="gateway", status="succeeded", gateway_refund_id=item["id"], failure_reason=None,
            policy_version=None, created_at=now, updated_at=now))
        await conn.execute(update(payments).where(payments.c.id == payment.id).values(
            refunded_amount=payments.c.refunded_amount + amount, updated_at=now))
        await record(conn, SYSTEM, "refund.recorded_from_gateway", now, subject_type="refund", subject_id=refund_id,
                     customer_id=payment.customer_id, reason="refunded in Stripe's dashboard",
                     data={"payment_id": payment.id, "amount": amount, "gateway_refund_id": item["id"]})
        recorded += 1
    return "applied" if recorded else "already_applied"


async def _dispute_created(conn, ctx: AppContext, dispute: dict[str, Any], now) -> str:  # noqa: ANN001
    """A chargeback: recorded and audited for ops to act on; it changes no subscription by itself."""
    payment = await payment_repo.by_gateway_id(conn, dispute.get("payment_intent") or "")
    if payment is None:
        return "unknown_object"
    await record(conn, SYSTEM, "payment.disputed", now, subject_type="payment", subject_id=payment.id,
                 customer_id=payment.customer_id, reason=dispute.get("reason"),
                 data={"dispute_id": dispute.get("id"), "amount": dispute.get("amount"),
                       "status": dispute.get("status")})
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
    try:
        async with unit_of_work(ctx) as uow:
            conn, now = uow.conn, uow.now
            outcome = await handler(conn, ctx, obj, now) if handler else "ignored"
            stored = await insert_ignoring_conflict(conn, webhook_events, {
                "id": event.id, "type": event_type, "object_id": event.object_id, "received_at": now,
                "outcome": outcome, "payload": event.payload, "note": None,
            }, conflict_on=["id"])
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
    if event_type == "payment_intent.payment_failed" and outcome == "applied":
        await corrections.cancel_at_gateway(ctx, intent_ids=[obj.get("id") or ""])
    elif outcome == "refunded_late_success":
        await send_corrections(ctx, obj.get("id") or "")
    return False, outcome


_STORED = select(webhook_events.c.id).where(webhook_events.c.id == bindparam("event_id"))


async def _stored(ctx: AppContext, event_id: str) -> bool:
    async with ctx.db.read() as conn:
        return (await conn.execute(_STORED, {"event_id": event_id})).first() is not None
