"""Applying Stripe events: each event id once (an inbox unique on the id, written in the transaction that
applies the event), in any order (state only moves forward), unknown objects stored and acknowledged."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from app.audit.service import SYSTEM, record
from app.context import AppContext
from app.db import insert_ignoring_conflict
from app.gateways.base import ChargeResult
from app.models import payments, webhook_events
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
        # Money moved after we had given the purchase up: the books record it, nothing is granted; ops decide.
        await conn.execute(update(payments).where(payments.c.id == payment.id).values(
            status="succeeded", gateway_payment_id=intent["id"], updated_at=now))
        await record(conn, SYSTEM, "payment.succeeded_after_abandon", now, subject_type="payment",
                     subject_id=payment.id, customer_id=payment.customer_id)
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


HANDLERS = {
    "payment_intent.succeeded": _intent_succeeded,
    "payment_intent.payment_failed": _intent_failed,
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
        if stored.rowcount == 0:
            return True, "duplicate"
        handler = HANDLERS.get(event_type)
        outcome = await handler(conn, ctx, obj, now) if handler else "ignored"
        await conn.execute(update(webhook_events).where(webhook_events.c.id == event["id"]).values(outcome=outcome))
    return False, outcome
