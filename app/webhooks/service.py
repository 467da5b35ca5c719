"""Applying Stripe events: each event id once (an inbox unique on the id, written in the transaction that
applies the event), in any order (state only moves forward), unknown objects stored and acknowledged."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update

from app.audit.service import SYSTEM, record
from app.context import AppContext
from app.db import insert_ignoring_conflict
from app.gateways.base import ChargeResult
from app.ids import new_id
from app.models import payments, refunds, webhook_events
from app.payments import repository as payment_repo
from app.subscriptions import charging


async def _payment_for(conn, intent: dict[str, Any]):  # noqa: ANN001, ANN202
    payment = await payment_repo.by_gateway_id(conn, intent.get("id", ""), for_update=True)
    key = (intent.get("metadata") or {}).get("idempotency_key")
    if payment is None and key:
        payment = await payment_repo.by_key(conn, key, for_update=True)
    return payment


async def _intent_succeeded(conn, ctx: AppContext, intent: dict[str, Any], now) -> str:  # noqa: ANN001
    payment = await _payment_for(conn, intent)
    if payment is None:
        return "unknown_object"
    if payment.status == "pending":
        await charging.settle(conn, ctx, payment.id, ChargeResult("succeeded", intent["id"]), now)
        return "applied"
    if payment.status == "failed":
        # The gateway says a charge we had recorded as failed went through after all (e.g. the customer completed
        # an authentication): a renewal still awaited renews; anything else is recorded and grants nothing.
        await charging.record_success(conn, ctx, payment, intent["id"], now, SYSTEM)
        return "recorded_late_success"
    return "already_applied"


async def _intent_failed(conn, ctx: AppContext, intent: dict[str, Any], now) -> str:  # noqa: ANN001
    payment = await _payment_for(conn, intent)
    if payment is None:
        return "unknown_object"
    if payment.status != "pending":
        return "already_applied"  # a late failure never undoes a success
    error = intent.get("last_payment_error") or {}
    code = error.get("decline_code") or error.get("code") or "payment_failed"
    await charging.settle(conn, ctx, payment.id, ChargeResult("failed", intent["id"], decline_code=code), now)
    return "applied"


async def _charge_refunded(conn, ctx: AppContext, charge: dict[str, Any], now) -> str:  # noqa: ANN001
    """A refund made in Stripe's dashboard is recorded once, keyed by Stripe's refund id, and counts against what
    is left to refund. Our own refunds carry our id in their metadata and are recorded by us already."""
    payment = await payment_repo.by_gateway_id(conn, charge.get("payment_intent") or "", for_update=True)
    if payment is None:
        return "unknown_object"
    recorded = 0
    for item in (charge.get("refunds") or {}).get("data") or []:
        if item.get("status") not in ("succeeded", "pending") or not item.get("id"):
            continue
        ours = (item.get("metadata") or {}).get("billing_refund_id")
        known = await conn.execute(select(refunds.c.id).where(
            (refunds.c.gateway_refund_id == item["id"]) | (refunds.c.id == (ours or ""))))
        if known.first() is not None:
            continue
        amount = int(item.get("amount") or 0)
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


async def handle_event(ctx: AppContext, event: dict[str, Any]) -> tuple[bool, str]:
    """Store and apply one verified event; returns (duplicate, outcome)."""
    event_type = event.get("type", "")
    obj = (event.get("data") or {}).get("object") or {}
    if event_type == "payment_intent.succeeded" and hasattr(ctx.gateway, "complete_action"):
        await ctx.gateway.complete_action(obj.get("id", ""))  # the sandbox's own books follow the event
    async with ctx.db.transaction() as conn:
        now = await ctx.clock.now(conn)
        stored = await insert_ignoring_conflict(conn, webhook_events, {
            "id": event["id"], "type": event_type, "object_id": obj.get("id"), "received_at": now,
            "outcome": "received", "payload": event, "note": None,
        }, conflict_on=["id"])
        if stored == 0:
            return True, "duplicate"
        handler = HANDLERS.get(event_type)
        outcome = await handler(conn, ctx, obj, now) if handler else "ignored"
        await conn.execute(update(webhook_events).where(webhook_events.c.id == event["id"]).values(outcome=outcome))
    return False, outcome
