"""Charging a subscription, shared by the purchase, the renewal and retry jobs, and payment webhooks.

Every charge is a `payments` row created *before* the gateway is called, with an idempotency key derived from
the subscription, the period and the attempt. The gateway call happens outside any transaction; its outcome is
recorded afterwards, only while the payment is still pending. So a crash anywhere leaves a pending payment whose
charge is repeated with the same key (returning the first result, never charging twice), and a late or repeated
outcome (webhook, second replica) finds the payment settled and changes nothing: state only moves forward.
"""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.audit.service import SYSTEM, record
from app.auth import Principal
from app.context import AppContext
from app.db import insert_ignoring_conflict
from app.gateways.base import ChargeRequest, ChargeResult
from app.ids import new_id
from app.models import credit_entries, customers, payments, plans, subscriptions, trials
from app.notices import templates
from app.notices.service import NewNotice, create_notices
from app.trials.identity import person_identities
from app.trials.service import mark_person
from policies import (
    FailureOutcome,
    after_failed_charge,
    charge_breakdown,
    forfeit_at,
    period_bounds,
)


def payment_key(subscription_id: str, period_index: int, attempt: int) -> str:
    return f"{subscription_id}:period-{period_index}:attempt-{attempt}"


def new_payment(ctx: AppContext, sub, customer, *, purpose: str, period_index: int, attempt: int,  # noqa: ANN001
                now: _dt.datetime, credit_balance: int = 0) -> dict:
    """B3/P2/R2: the locked price plus the tax of the customer's billing country, less the account credit, in
    integer minor units."""
    policy = ctx.policies.at(now)
    breakdown = charge_breakdown(sub.price_amount, customer.country or "", policy,
                                 credit_balance=max(0, credit_balance))
    return {
        "id": new_id("pay"), "customer_id": sub.customer_id, "subscription_id": sub.id, "purpose": purpose,
        "period_index": period_index, "period_start": None, "period_end": None,
        "price_amount": breakdown.price, "tax_amount": breakdown.tax, "credit_applied": breakdown.credit_applied,
        "amount": breakdown.card_amount, "currency": sub.currency, "status": "pending", "failure_code": None,
        "refunded_amount": 0, "payment_method": sub.payment_method, "gateway": ctx.gateway.name,
        "gateway_payment_id": None, "client_secret": None,
        "idempotency_key": payment_key(sub.id, period_index, attempt), "policy_version": policy.version,
        "created_at": now, "updated_at": now,
    }


async def charge(ctx: AppContext, payment, gateway_customer: str, *, off_session: bool) -> ChargeResult:  # noqa: ANN001
    """Call the gateway for a pending payment (outside any transaction). Nothing to charge: succeeded at once."""
    if payment.amount == 0:
        return ChargeResult(status="succeeded", payment_id=f"free_{payment.id}")
    return await ctx.gateway.charge(ChargeRequest(
        amount=payment.amount, currency=payment.currency, payment_method=payment.payment_method,
        customer_id=payment.customer_id, gateway_customer=gateway_customer, off_session=off_session,
        idempotency_key=payment.idempotency_key, description=f"subscription {payment.subscription_id}",
    ))


async def settle(conn: AsyncConnection, ctx: AppContext, payment_id: str, result: ChargeResult,
                 now: _dt.datetime, actor: Principal = SYSTEM) -> str:
    """Record a gateway outcome on a payment that is still pending; returns the payment's status afterwards."""
    payment = (await conn.execute(select(payments).where(payments.c.id == payment_id).with_for_update())).one()
    if payment.status != "pending":
        return payment.status  # settled already (a repeat, a second replica, a late webhook): forward only
    if result.status == "succeeded":
        await record_success(conn, ctx, payment, result.payment_id, now, actor)
        return "succeeded"
    if result.status == "requires_action" and payment.purpose == "purchase":
        await conn.execute(update(payments).where(payments.c.id == payment.id).values(
            gateway_payment_id=result.payment_id, client_secret=result.client_secret, updated_at=now))
        await conn.execute(update(subscriptions).where(subscriptions.c.id == payment.subscription_id)
                           .values(claimed_until=None))
        return "pending"
    # Off-session, a payment needing the customer's action cannot complete: it counts as a failure (B5).
    code = result.decline_code or ("authentication_required" if result.status == "requires_action" else "failed")
    await failed(conn, ctx, payment, result.payment_id or None, code, now, actor)
    return "failed"


async def plan_name(conn: AsyncConnection, plan_id: str) -> str:
    return (await conn.execute(select(plans.c.name).where(plans.c.id == plan_id))).scalar_one()


async def record_success(conn: AsyncConnection, ctx: AppContext, payment, gateway_payment_id: str,  # noqa: ANN001
                     now: _dt.datetime, actor: Principal) -> None:
    """A charge succeeded (now, or late through a webhook): the subscription starts (purchase) or moves to the
    period paid for (renewal, retry). A payment for a period that is no longer the next one (the subscription
    ended, or that period was paid by another charge) is recorded for the books and for ops, and grants nothing."""
    sub = (await conn.execute(select(subscriptions).where(subscriptions.c.id == payment.subscription_id)
                              .with_for_update())).one()
    expected = sub.status == "incomplete" if payment.purpose == "purchase" else (
        sub.status in ("active", "past_due") and sub.period_index + 1 == payment.period_index)
    if not expected:
        await conn.execute(update(payments).where(payments.c.id == payment.id).values(
            status="succeeded", gateway_payment_id=gateway_payment_id, updated_at=now))
        await record(conn, actor, "payment.succeeded_without_effect", now, subject_type="payment",
                     subject_id=payment.id, customer_id=payment.customer_id, policy_version=payment.policy_version,
                     data={"subscription_status": sub.status, "period_index": payment.period_index})
        return
    if payment.purpose == "purchase":
        # B1: the subscription starts at its first successful payment; its periods are anchored there (B4).
        anchor, index = now, 0
        start, end = period_bounds(anchor, sub.interval, index)
        await _forfeit_trials(conn, payment.customer_id, now)  # T6
        customer = (await conn.execute(select(customers).where(customers.c.id == payment.customer_id))).one()
        await mark_person(conn, person_identities(ctx.settings.identity_key, customer.id, [customer.email]),
                          "paid", now)  # T5: a paid subscription bars a later trial
    else:
        # B2/B4/B5: the next period, counted from the acquisition anchor (a late retry does not move it).
        anchor, index = sub.anchor_at, payment.period_index
        start, end = period_bounds(anchor, sub.interval, index)
    await conn.execute(update(subscriptions).where(subscriptions.c.id == sub.id).values(
        status="active", anchor_at=anchor, period_index=index, current_period_start=start, current_period_end=end,
        tax_amount=payment.tax_amount, failed_attempts=0, next_retry_at=None, claimed_until=None))
    await conn.execute(update(payments).where(payments.c.id == payment.id).values(
        status="succeeded", gateway_payment_id=gateway_payment_id, period_start=start, period_end=end,
        client_secret=None, updated_at=now))
    if payment.credit_applied:  # R2: the credit is spent only by a charge that succeeded
        await insert_ignoring_conflict(conn, credit_entries, {
            "id": new_id("cred"), "customer_id": payment.customer_id, "kind": "spend",
            "amount": -payment.credit_applied, "currency": payment.currency, "reason": None,
            "created_by": "system", "payment_id": payment.id, "policy_version": payment.policy_version,
            "created_at": now}, conflict_on=["payment_id"])
    subject, body = templates.receipt(await plan_name(conn, sub.plan_id), payment.price_amount, payment.tax_amount,
                                      payment.credit_applied, payment.amount, payment.currency, start, end)
    await create_notices(conn, [NewNotice(payment.customer_id, "receipt", f"receipt:{payment.id}", subject, body)],
                         now, ctx.system_clock.wall())
    action = "subscription.activated" if payment.purpose == "purchase" else "subscription.renewed"
    await record(conn, actor, action, now, subject_type="subscription", subject_id=sub.id,
                 customer_id=sub.customer_id, policy_version=payment.policy_version,
                 data={"payment_id": payment.id, "amount": payment.amount, "tax": payment.tax_amount,
                       "period_start": start.isoformat(), "period_end": end.isoformat()})


async def _forfeit_trials(conn: AsyncConnection, customer_id: str, now: _dt.datetime) -> None:
    """T6: buying during a trial ends it at once; its unused days are not added to the paid period."""
    running = (await conn.execute(select(trials.c.id, trials.c.ends_at).where(
        trials.c.customer_id == customer_id, trials.c.status == "active"))).all()
    for trial in running:
        ended = forfeit_at(trial.ends_at, now)
        if ended is not None:  # a trial already past its end is left to expire (T3)
            await conn.execute(update(trials).where(trials.c.id == trial.id).values(status="forfeited",
                                                                                    ended_at=ended))


async def failed(conn: AsyncConnection, ctx: AppContext, payment, gateway_payment_id: str | None,  # noqa: ANN001
                 code: str, now: _dt.datetime, actor: Principal = SYSTEM) -> None:
    await conn.execute(update(payments).where(payments.c.id == payment.id).values(
        status="failed", failure_code=code, gateway_payment_id=gateway_payment_id, client_secret=None,
        updated_at=now))
    sub = (await conn.execute(select(subscriptions).where(subscriptions.c.id == payment.subscription_id)
                              .with_for_update())).one()
    if payment.purpose == "purchase":
        # B1: a purchase whose payment fails leaves no active subscription and grants nothing.
        if sub.status == "incomplete":
            await conn.execute(update(subscriptions).where(subscriptions.c.id == sub.id).values(
                status="canceled", ended_at=now, ended_reason="payment_failed", claimed_until=None))
        await record(conn, actor, "subscription.purchase_failed", now, subject_type="subscription",
                     subject_id=sub.id, customer_id=sub.customer_id, policy_version=payment.policy_version,
                     data={"payment_id": payment.id, "failure_code": code})
        return
    if sub.status not in ("active", "past_due"):
        return
    policy = ctx.policies.at(now)
    attempt = sub.failed_attempts + 1
    outcome = after_failed_charge(sub.current_period_end, attempt, policy)  # B5
    if sub.cancel_at_period_end:
        # C1: a cancellation recorded while this charge was in flight: no retry, the subscription ends with its
        # period, as it would have without the charge.
        outcome = FailureOutcome("ended", None, "canceled")
    name = await plan_name(conn, sub.plan_id)
    subject, body = templates.payment_failed(name, payment.amount, payment.currency, outcome.next_retry_at)
    notices = [NewNotice(sub.customer_id, "payment_failed", f"payment_failed:{payment.id}", subject, body)]
    if outcome.status == "past_due":
        await conn.execute(update(subscriptions).where(subscriptions.c.id == sub.id).values(
            status="past_due", failed_attempts=attempt, next_retry_at=outcome.next_retry_at, claimed_until=None))
    else:
        await conn.execute(update(subscriptions).where(subscriptions.c.id == sub.id).values(
            status="canceled", failed_attempts=attempt, next_retry_at=None,
            ended_at=sub.current_period_end if outcome.ended_reason == "canceled" else now,
            ended_reason=outcome.ended_reason, claimed_until=None))
        subject, body = templates.subscription_ended(name, outcome.ended_reason)
        notices.append(NewNotice(sub.customer_id, "subscription_ended", f"subscription_ended:{sub.id}", subject,
                                 body))
    await create_notices(conn, notices, now, ctx.system_clock.wall())
    await record(conn, actor, "subscription.payment_failed", now, subject_type="subscription", subject_id=sub.id,
                 customer_id=sub.customer_id, policy_version=policy.version,
                 data={"payment_id": payment.id, "failure_code": code, "attempt": attempt,
                       "outcome": outcome.status,
                       "next_retry_at": outcome.next_retry_at.isoformat() if outcome.next_retry_at else None})
