"""Scheduled subscription work: period ends (C1), renewals (B2, B3), dunning retries (B5) and abandoned
purchases (B1). Work is claimed in batches: a short lease (`claimed_until`, taken under SKIP LOCKED on
PostgreSQL) keeps replicas off each other's subscriptions while the gateway is called outside any transaction."""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import or_, select, update

from app.audit.service import SYSTEM, audit_row, record_many
from app.credits import repository as credit_repo
from app.db import insert_ignoring_returning
from app.gateways.base import ChargeResult, GatewayError
from app.models import customers, payments, plans, subscriptions
from app.notices import templates
from app.notices.service import NewNotice, create_notices
from app.payments.corrections import cancel_at_gateway, cancel_due
from app.subscriptions import charging
from policies import period_end_action, renewal_due

LEASE = _dt.timedelta(minutes=2)
INCOMPLETE_EXPIRES_AFTER = _dt.timedelta(hours=23)  # as Stripe expires an unpaid first invoice


def _claimable(stmt, ctx, wall: _dt.datetime):  # noqa: ANN001, ANN202
    stmt = stmt.where(or_(subscriptions.c.claimed_until.is_(None), subscriptions.c.claimed_until <= wall))
    stmt = stmt.limit(ctx.settings.job_batch_size)
    return stmt.with_for_update(of=subscriptions, skip_locked=True) if ctx.db.is_postgres else stmt


async def end_canceled_subscriptions(ctx, now: _dt.datetime) -> int:  # noqa: ANN001
    """C1: a cancellation takes effect at the period end: the subscription ends, no charge is made."""
    wall = ctx.system_clock.wall()
    async with ctx.db.transaction() as conn:
        due = (await conn.execute(_claimable(
            select(subscriptions.c.id, subscriptions.c.customer_id, subscriptions.c.policy_version,
                   subscriptions.c.status, subscriptions.c.cancel_at_period_end, subscriptions.c.current_period_end,
                   plans.c.name.label("plan_name"))
            .join(plans, plans.c.id == subscriptions.c.plan_id)
            .where(subscriptions.c.status == "active", subscriptions.c.cancel_at_period_end.is_(True),
                   subscriptions.c.current_period_end <= now), ctx, wall))).all()
        due = [s for s in due
               if period_end_action(s.status, s.cancel_at_period_end, s.current_period_end, now) == "end"]
        if not due:
            return 0
        await conn.execute(update(subscriptions).where(subscriptions.c.id.in_([s.id for s in due])).values(
            status="canceled", ended_at=subscriptions.c.current_period_end, ended_reason="canceled"))
        items = []
        for s in due:
            subject, body = templates.subscription_ended(s.plan_name, "canceled")
            items.append(NewNotice(s.customer_id, "subscription_ended", f"subscription_ended:{s.id}", subject, body))
        await create_notices(conn, items, now, wall)
        await record_many(conn, [audit_row(SYSTEM, "subscription.ended", now, subject_type="subscription",
                                           subject_id=s.id, customer_id=s.customer_id, data={"reason": "canceled"},
                                           policy_version=s.policy_version) for s in due])
    return len(due)


async def _charge_batch(ctx, now: _dt.datetime, where, is_due, purpose: str) -> int:  # noqa: ANN001
    wall = ctx.system_clock.wall()
    async with ctx.db.transaction() as conn:
        due = (await conn.execute(_claimable(
            select(subscriptions, customers.c.country, customers.c.gateway_customer_id)
            .join(customers, customers.c.id == subscriptions.c.customer_id).where(*where), ctx, wall))).all()
        due = [s for s in due if is_due(s, now)]
        if not due:
            return 0
        lease = wall + LEASE
        await conn.execute(update(subscriptions).where(subscriptions.c.id.in_([s.id for s in due]))
                           .values(claimed_until=lease))
        credit: dict[str, int] = {}
        for currency in {s.currency for s in due}:
            credit.update(await credit_repo.balances(conn, [s.customer_id for s in due if s.currency == currency],
                                                     currency))
        rows = [charging.new_payment(ctx, s, s, purpose=purpose, period_index=s.period_index + 1,
                                     attempt=s.failed_attempts + 1, now=now, credit_balance=credit[s.customer_id])
                for s in due]
        # A payment left pending by a crash has the same key: it is reused, and charged again with that key. The
        # insert returns the rows it made; only the keys that existed already are read back.
        keyed = {p.idempotency_key: p for p in await insert_ignoring_returning(conn, payments, rows,
                                                                               conflict_on=["idempotency_key"])}
        existing = [r["idempotency_key"] for r in rows if r["idempotency_key"] not in keyed]
        if existing:
            keyed.update((p.idempotency_key, p) for p in (await conn.execute(
                select(payments).where(payments.c.idempotency_key.in_(existing)))).all())
    work = [(s, keyed[r["idempotency_key"]]) for s, r in zip(due, rows, strict=True)]
    pending = [(payment, sub.gateway_customer_id or "") for sub, payment in work if payment.status == "pending"]
    answered = list(zip(pending, await charging.charge_many(ctx, pending), strict=True))
    outcomes = [(payment, result) for (payment, _), result in answered if isinstance(result, ChargeResult)]
    # A charge the gateway refused itself (not the card) keeps its lease: no batch claims it again until the lease
    # has run out (so refused charges never stand in front of the rest of the due work), then a later run tries it
    # again with the same key.
    refused = {payment.subscription_id for (payment, _), result in answered if isinstance(result, GatewayError)}
    # One transaction records the whole batch; were it lost, the charges are repeated with their keys.
    async with ctx.db.transaction() as conn:
        await charging.settle_many(conn, ctx, outcomes, now)
        # The lease is given back wherever settling did not give it back (no answer from the gateway, a payment
        # settled already), except for refused charges (above): no charge is in flight for those any more, so a
        # cancellation is not held up (C1), and a later run charges again with the same key.
        await conn.execute(update(subscriptions).where(
            subscriptions.c.id.in_([s.id for s in due if s.id not in refused]), subscriptions.c.claimed_until == lease)
            .values(claimed_until=None))
    return len(outcomes)


async def renew_subscriptions(ctx, now: _dt.datetime) -> int:  # noqa: ANN001
    """B2/B3: at each period end an active subscription without a scheduled cancellation is charged the locked
    price off-session for the next period."""
    return await _charge_batch(ctx, now, [subscriptions.c.status == "active",
                                          subscriptions.c.cancel_at_period_end.is_(False),
                                          subscriptions.c.current_period_end <= now],
                               lambda s, at: renewal_due(s.status, s.cancel_at_period_end, s.current_period_end, at),
                               "renewal")


async def retry_failed_renewals(ctx, now: _dt.datetime) -> int:  # noqa: ANN001
    """B5: a past-due subscription is charged again on its retry dates, with its current payment method."""
    return await _charge_batch(ctx, now, [subscriptions.c.status == "past_due",
                                          subscriptions.c.next_retry_at <= now],
                               lambda s, at: s.status == "past_due" and s.next_retry_at <= at, "retry")


async def expire_incomplete_purchases(ctx, now: _dt.datetime) -> int:  # noqa: ANN001
    """B1: a purchase whose payment never completes grants nothing and, after a day, frees the live slot."""
    wall = ctx.system_clock.wall()
    async with ctx.db.transaction() as conn:
        due = (await conn.execute(_claimable(
            select(subscriptions.c.id, subscriptions.c.customer_id, subscriptions.c.policy_version)
            .where(subscriptions.c.status == "incomplete",
                   subscriptions.c.created_at <= now - INCOMPLETE_EXPIRES_AFTER), ctx, wall))).all()
        if not due:
            return 0
        ids = [s.id for s in due]
        await conn.execute(update(subscriptions).where(subscriptions.c.id.in_(ids)).values(
            status="canceled", ended_at=now, ended_reason="payment_failed"))
        # B1: a PaymentIntent still waiting for the customer is cancelled at the gateway once this commits.
        expired = (await conn.execute(
            update(payments).where(payments.c.subscription_id.in_(ids), payments.c.status == "pending")
            .values(status="failed", failure_code="expired", updated_at=now, gateway_cancel_due_at=cancel_due(wall))
            .returning(payments.c.id, payments.c.gateway_cancel_due_at))).all()
        await record_many(conn, [audit_row(SYSTEM, "subscription.purchase_expired", now, subject_type="subscription",
                                           subject_id=s.id, customer_id=s.customer_id,
                                           policy_version=s.policy_version) for s in due])
    await cancel_at_gateway(ctx, payment_ids=[p.id for p in expired if p.gateway_cancel_due_at is not None])
    return len(due)
