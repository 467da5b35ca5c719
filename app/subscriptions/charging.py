"""Charging a subscription, shared by the purchase, the renewal and retry jobs, and payment webhooks.

Every charge is a `payments` row created *before* the gateway is called, with an idempotency key derived from
the subscription, the period and the attempt. The gateway call happens outside any transaction; its outcome is
recorded afterwards, only while the payment is still pending. So a crash anywhere leaves a pending payment whose
charge is repeated with the same key (returning the first result, never charging twice), and a late or repeated
outcome (webhook, second replica) finds the payment settled and changes nothing: state only moves forward.
"""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.access.service import access_changed, facts_of
from app.audit.service import SYSTEM, audit_row, changed, record, record_many
from app.auth import Principal
from app.context import AppContext
from app.db import insert_ignoring_conflict
from app.gateways.base import ChargeOutcome, ChargeRequest, ChargeResult
from app.ids import new_id
from app.models import credit_entries, customers, payments, plans, subscriptions, trials
from app.notices import templates
from app.notices.service import NewNotice, create_notices
from app.payments.schemas import to_api as payment_to_api
from app.refunds.service import book_correction
from app.subscriptions.schemas import as_read
from app.trials.identity import person_identities
from app.trials.schemas import to_api as trial_to_api
from app.trials.service import mark_person
from policies import (
    after_failed_charge,
    cancellation_ends_period,
    charge_breakdown,
    failure_with_cancellation,
    forfeit_at,
    late_success,
    period_bounds,
)


def payment_key(subscription_id: str, period_index: int, attempt: int) -> str:
    return f"{subscription_id}:period-{period_index}:attempt-{attempt}"


def new_payment(
    ctx: AppContext,
    sub,
    customer,
    *,
    purpose: str,
    period_index: int,
    attempt: int,
    now: _dt.datetime,
    credit_balance: int = 0,
) -> dict:
    """B3/P2/R2: the locked price plus the tax of the customer's billing country, less the account credit, in
    integer minor units."""
    policy = ctx.policies.at(now)
    breakdown = charge_breakdown(
        sub.price_amount, customer.country or "", policy, credit_balance=max(0, credit_balance)
    )
    return {
        "id": new_id("pay"),
        "customer_id": sub.customer_id,
        "subscription_id": sub.id,
        "purpose": purpose,
        "period_index": period_index,
        "period_start": None,
        "period_end": None,
        "price_amount": breakdown.price,
        "tax_amount": breakdown.tax,
        "credit_applied": breakdown.credit_applied,
        "amount": breakdown.card_amount,
        "currency": sub.currency,
        "status": "pending",
        "failure_code": None,
        "refunded_amount": 0,
        "payment_method": sub.payment_method,
        "gateway": ctx.gateway.name,
        "gateway_payment_id": None,
        "client_secret": None,
        "idempotency_key": payment_key(sub.id, period_index, attempt),
        "policy_version": policy.version,
        "created_at": now,
        "updated_at": now,
    }


def _request(payment, gateway_customer: str, off_session: bool) -> ChargeRequest:  # noqa: ANN001
    return ChargeRequest(
        amount=payment.amount,
        currency=payment.currency,
        payment_method=payment.payment_method,
        customer_id=payment.customer_id,
        gateway_customer=gateway_customer,
        off_session=off_session,
        idempotency_key=payment.idempotency_key,
        description=f"subscription {payment.subscription_id}",
    )


def _nothing_to_charge(payment) -> ChargeResult:  # noqa: ANN001
    return ChargeResult(status="succeeded", payment_id=f"free_{payment.id}")


async def charge(ctx: AppContext, payment, gateway_customer: str, *, off_session: bool) -> ChargeResult:  # noqa: ANN001
    """Call the gateway for a pending payment (outside any transaction). Nothing to charge: succeeded at once."""
    if payment.amount == 0:
        return _nothing_to_charge(payment)
    return await ctx.gateway.charge(_request(payment, gateway_customer, off_session))


async def charge_many(ctx: AppContext, work: list) -> list[ChargeOutcome]:
    """`charge` off-session for a batch of (pending payment, gateway customer) pairs, in one call to the gateway
    (`PaymentGateway.charge_many`): the outcomes in order."""
    billable = [(payment, customer) for payment, customer in work if payment.amount > 0]
    answers = await ctx.gateway.charge_many([_request(p, c, True) for p, c in billable]) if billable else []
    if len(answers) != len(billable):
        raise RuntimeError(f"the gateway answered {len(answers)} of {len(billable)} charges")
    outcomes = iter(answers)
    return [next(outcomes) if payment.amount > 0 else _nothing_to_charge(payment) for payment, _ in work]


# Statements built once at import: executing the same statement object skips building the construct and
# computing its cache key on every call (SQLAlchemy memoizes the key on the object).
#
# A settlement locks the subscription, then the payment: the one order every writer of both follows
# (cancellation, termination, erasure, other settlements), so one racing another waits instead of deadlocking.
# The subscription comes with what a settlement writes about it: its plan's name (receipts, failure notices), its
# customer's e-mail (T5: the identity marked by a purchase) and whether the customer has a running trial (T6: a
# purchase forfeits it; read, as `_forfeit_trials` reads the trials, without a lock).
_SUBSCRIPTION_COLUMNS = (
    subscriptions,
    # A subquery, not a join: a subscription locked after a concurrent plan change (C3/C4, issue 16) is re-read
    # with its new plan (PostgreSQL re-checks a join against the old plan's row and would skip the subscription).
    select(plans.c.name).where(plans.c.id == subscriptions.c.plan_id).scalar_subquery().label("plan_name"),
    customers.c.email.label("customer_email"),
    customers.c.status.label("customer_status"),
    exists()
    .where(trials.c.customer_id == subscriptions.c.customer_id, trials.c.status == "active")
    .label("has_running_trial"),
)
_SUBSCRIPTION_JOINS = subscriptions.join(customers, customers.c.id == subscriptions.c.customer_id)


def _lock_subscription_of_payment(where):  # noqa: ANN001, ANN202
    """The subscription of the payment matching `where` (a payment's subscription never changes), locked; only
    the subscription's row is locked (`FOR UPDATE OF`), the payment is locked next, by its id."""
    return (
        select(*_SUBSCRIPTION_COLUMNS, payments.c.id.label("locked_payment_id"))
        .select_from(_SUBSCRIPTION_JOINS.join(payments, payments.c.subscription_id == subscriptions.c.id))
        .where(where)
        .with_for_update(of=subscriptions)
    )


_LOCK_VIA = {
    "id": _lock_subscription_of_payment(payments.c.id == bindparam("value")),
    "gateway_payment_id": _lock_subscription_of_payment(payments.c.gateway_payment_id == bindparam("value")),
    "idempotency_key": _lock_subscription_of_payment(payments.c.idempotency_key == bindparam("value")),
}
_LOCK_PAYMENT = select(payments).where(payments.c.id == bindparam("payment_id")).with_for_update()
_LOCK_SUBSCRIPTION = (
    select(*_SUBSCRIPTION_COLUMNS)
    .select_from(_SUBSCRIPTION_JOINS)
    .where(subscriptions.c.id == bindparam("subscription_id"))
    .with_for_update(of=subscriptions)
)
# A batch: its subscriptions, then its payments, each in ascending id order (two batches, or a batch and a
# termination, meet in the same order and cannot deadlock).
_LOCK_SUBSCRIPTIONS = (
    select(*_SUBSCRIPTION_COLUMNS)
    .select_from(_SUBSCRIPTION_JOINS)
    .where(subscriptions.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(subscriptions.c.id)
    .with_for_update(of=subscriptions)
)
_LOCK_PAYMENTS = (
    select(payments)
    .where(payments.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(payments.c.id)
    .with_for_update()
)
_RENEW_SUBSCRIPTION = (
    update(subscriptions)
    .where(subscriptions.c.id == bindparam("b_id"))
    .values(
        status="active",
        period_index=bindparam("b_index"),
        current_period_start=bindparam("b_start"),
        current_period_end=bindparam("b_end"),
        tax_amount=bindparam("b_tax"),
        failed_attempts=0,
        next_retry_at=None,
        claimed_until=None,
    )
)
_PAYMENT_SUCCEEDED = (
    update(payments)
    .where(payments.c.id == bindparam("b_id"))
    .values(
        status="succeeded",
        gateway_payment_id=bindparam("b_gateway_id"),
        period_start=bindparam("b_start"),
        period_end=bindparam("b_end"),
        client_secret=None,
        updated_at=bindparam("b_now"),
    )
)
_START_SUBSCRIPTION = (
    update(subscriptions)
    .where(subscriptions.c.id == bindparam("b_id"))
    .values(
        status="active",
        anchor_at=bindparam("b_anchor"),
        period_index=bindparam("b_index"),
        current_period_start=bindparam("b_start"),
        current_period_end=bindparam("b_end"),
        tax_amount=bindparam("b_tax"),
        failed_attempts=0,
        next_retry_at=None,
        claimed_until=None,
    )
    .returning(*subscriptions.c)
)
_PAYMENT_SUCCEEDED_WITHOUT_EFFECT = (
    update(payments)
    .where(payments.c.id == bindparam("b_id"))
    .values(status="succeeded", gateway_payment_id=bindparam("b_gateway_id"), updated_at=bindparam("b_now"))
)
# A purchase paid (the webhook's common case): the payment, still pending, is written succeeded and locked by the
# one statement, which returns it; nothing matches (and nothing is written) when it is no longer a pending purchase.
_PURCHASE_PAID = (
    update(payments)
    .where(payments.c.id == bindparam("b_id"), payments.c.status == "pending", payments.c.purpose == "purchase")
    .values(
        status="succeeded",
        gateway_payment_id=bindparam("b_gateway_id"),
        period_start=bindparam("b_start"),
        period_end=bindparam("b_end"),
        client_secret=None,
        updated_at=bindparam("b_now"),
    )
    .returning(*payments.c)
)
_RUNNING_TRIALS = select(trials).where(trials.c.customer_id == bindparam("customer_id"), trials.c.status == "active")


async def lock_subscription_of_payment(conn: AsyncConnection, *, by: str, value: str):  # noqa: ANN201
    """Lock the subscription of the payment whose `by` ("id", "gateway_payment_id" or "idempotency_key") is
    `value` and return it (`locked_payment_id` names the payment), or None when no payment matches. Lock the
    payment next (`lock_payment_of`) before reading or writing it."""
    return (await conn.execute(_LOCK_VIA[by], {"value": value})).first()


async def lock_payment_of(conn: AsyncConnection, sub):  # noqa: ANN001, ANN201
    """The payment of a subscription row returned by `lock_subscription_of_payment`, locked."""
    return (await conn.execute(_LOCK_PAYMENT, {"payment_id": sub.locked_payment_id})).one()


async def lock_for_settlement(conn: AsyncConnection, *, by: str, value: str):  # noqa: ANN201
    """Lock the subscription of the payment whose `by` ("id", "gateway_payment_id" or "idempotency_key") is
    `value`, then the payment; returns (subscription, payment), or None when no payment matches."""
    sub = await lock_subscription_of_payment(conn, by=by, value=value)
    return None if sub is None else (sub, await lock_payment_of(conn, sub))


async def settle(
    conn: AsyncConnection,
    ctx: AppContext,
    payment_id: str,
    result: ChargeResult,
    now: _dt.datetime,
    actor: Principal = SYSTEM,
) -> str:
    """Record a gateway outcome on a payment that is still pending; returns the payment's status afterwards.

    Locks the subscription, then the payment: the one order every writer of both follows (cancel, termination,
    erasure), so a settlement racing them waits instead of deadlocking."""
    sub, payment = await lock_for_settlement(conn, by="id", value=payment_id)
    return await settle_locked(conn, ctx, payment, result, now, actor, sub=sub)


async def settle_locked(
    conn: AsyncConnection,
    ctx: AppContext,
    payment,
    result: ChargeResult,
    now: _dt.datetime,
    actor: Principal = SYSTEM,
    *,
    sub=None,
) -> str:
    """`settle`, for a payment locked by `lock_for_settlement` (`sub`: the subscription it returned, if at hand)."""
    if payment.purpose == "upgrade":  # C4 (issue 16): an upgrade's charge settles as app/plan_changes says
        from app.plan_changes.service import settle_upgrade  # imported here: that module builds on this one

        if sub is None:
            sub = (await conn.execute(_LOCK_SUBSCRIPTION, {"subscription_id": payment.subscription_id})).one()
        return await settle_upgrade(conn, ctx, payment, result, now, actor, sub)
    if payment.status != "pending":
        if payment.status == "failed" and result.status == "succeeded":
            # The gateway took the money for a charge we stopped waiting for (the subscription was ended while
            # it was in flight): the books record what happened, for ops to refund (R2); it grants nothing.
            await record_success(conn, ctx, payment, result.payment_id, now, actor, sub=sub)
            return "succeeded"
        return payment.status  # settled already (a repeat, a second replica, a late webhook): forward only
    if result.status == "succeeded":
        await record_success(conn, ctx, payment, result.payment_id, now, actor, sub=sub)
        return "succeeded"
    if result.status == "requires_action" and payment.purpose == "purchase":
        await conn.execute(
            update(payments)
            .where(payments.c.id == payment.id)
            .values(gateway_payment_id=result.payment_id, client_secret=result.client_secret, updated_at=now)
        )
        await conn.execute(
            update(subscriptions).where(subscriptions.c.id == payment.subscription_id).values(claimed_until=None)
        )
        return "pending"
    # Off-session, a payment needing the customer's action cannot complete: it counts as a failure (B5).
    code = result.decline_code or ("authentication_required" if result.status == "requires_action" else "failed")
    await failed(conn, ctx, payment, result.payment_id or None, code, now, actor, sub=sub)
    return "failed"


async def settle_many(
    conn: AsyncConnection,
    ctx: AppContext,
    outcomes: list,
    now: _dt.datetime,
    actor: Principal = SYSTEM,
) -> dict[str, str]:
    """`settle` for a batch of (payment, gateway outcome) pairs of renewals and retries, with one statement per
    kind of write instead of a dozen per payment; returns each payment's status afterwards, by payment id.

    Locks every subscription of the batch, then every payment, each in id order (the order of
    `lock_for_settlement`).
    The common case, a charge that succeeded for the period next due of an active or past-due subscription, is
    written set-based: exactly what `record_success` writes for it (the subscription moves to the period paid
    for, the payment records it, the credit spent, the receipt notice under its key, the audit event). Anything
    else (a failure, a payment settled already, a subscription ended or renewed meanwhile) goes through
    `settle_locked`, one by one, under the locks already held."""
    if not outcomes:
        return {}
    # A payment's subscription never changes: the rows read before the gateway call name it.
    subs = {
        s.id: s
        for s in (
            await conn.execute(
                _LOCK_SUBSCRIPTIONS, {"ids": sorted({payment.subscription_id for payment, _ in outcomes})}
            )
        ).all()
    }
    locked = {
        p.id: p
        for p in (await conn.execute(_LOCK_PAYMENTS, {"ids": sorted({payment.id for payment, _ in outcomes})})).all()
    }
    statuses: dict[str, str] = {}
    slow = []
    sub_rows, payment_rows, credit_rows, notice_items, audit_rows = [], [], [], [], []
    wall = ctx.system_clock.wall()
    for stale, result in outcomes:
        payment = locked[stale.id]
        sub = subs[payment.subscription_id]
        if not (
            payment.status == "pending"
            and result.status == "succeeded"
            and payment.purpose != "purchase"
            and renews(sub, payment)
        ):
            slow.append((payment, result))
            continue
        # B2/B4/B5: the next period, counted from the acquisition anchor (a late retry does not move it).
        start, end = period_bounds(sub.anchor_at, sub.interval, payment.period_index - sub.anchor_index)  # C3
        sub_rows.append(
            {
                "b_id": sub.id,
                "b_index": payment.period_index,
                "b_start": start,
                "b_end": end,
                "b_tax": payment.tax_amount,
            }
        )
        payment_rows.append(
            {"b_id": payment.id, "b_gateway_id": result.payment_id, "b_start": start, "b_end": end, "b_now": now}
        )
        if payment.credit_applied:  # R2: the credit is spent only by a charge that succeeded
            credit_rows.append(_credit_spend(payment, now))
        notice_items.append(_receipt(sub, payment, start, end))
        renewed = changed(
            sub,
            status="active",
            period_index=payment.period_index,
            current_period_start=start,
            current_period_end=end,
            tax_amount=payment.tax_amount,
            failed_attempts=0,
            next_retry_at=None,
            claimed_until=None,
        )
        audit_rows.append(
            _success_event(
                actor,
                "subscription.renewed",
                now,
                sub,
                payment,
                start,
                end,
                events=(
                    _paid_events(
                        ctx,
                        "subscription.renewed",
                        sub,
                        renewed,
                        payment_to_api(
                            changed(
                                payment,
                                status="succeeded",
                                gateway_payment_id=result.payment_id,
                                period_start=start,
                                period_end=end,
                                client_secret=None,
                                updated_at=now,
                            )
                        ),
                        now,
                    )
                ),
            )
        )
        statuses[payment.id] = "succeeded"
    if sub_rows:
        await conn.execute(_RENEW_SUBSCRIPTION, sub_rows)
        await conn.execute(_PAYMENT_SUCCEEDED, payment_rows)
        if credit_rows:
            await insert_ignoring_conflict(conn, credit_entries, credit_rows, conflict_on=["payment_id"])
        await create_notices(conn, notice_items, now, wall)
        await record_many(conn, audit_rows)
    for payment, result in slow:
        statuses[payment.id] = await settle_locked(
            conn, ctx, payment, result, now, actor, sub=subs[payment.subscription_id]
        )
    return statuses


def renews(sub, payment) -> bool:  # noqa: ANN001
    """B2/B5/C1: a renewal or retry charge that succeeded moves the subscription to the period it paid for when that
    period is the next one of a running subscription, and no cancellation was confirmed after the charge was made
    (its outcome was unknown then: the gateway gave no answer) for the current period end. Such a cancellation was
    confirmed for that period end with no further charge: the charge is booked for ops to refund (R2) and grants
    nothing. One asked after the period end (B2: in the renewed period) does not stop the renewal that was due."""
    if sub.status not in ("active", "past_due") or sub.period_index + 1 != payment.period_index:
        return False
    return not (
        sub.canceled_at is not None
        and sub.canceled_at >= payment.created_at
        and cancellation_ends_period(sub.cancel_at_period_end, sub.canceled_at, sub.current_period_end)
    )


def _credit_spend(payment, now: _dt.datetime) -> dict:  # noqa: ANN001
    return {
        "id": new_id("cred"),
        "customer_id": payment.customer_id,
        "kind": "spend",
        "amount": -payment.credit_applied,
        "currency": payment.currency,
        "reason": None,
        "created_by": "system",
        "payment_id": payment.id,
        "policy_version": payment.policy_version,
        "created_at": now,
    }


# What a successful charge writes about itself, the same from `record_success` and `settle_many`.
def _receipt(sub, payment, start: _dt.datetime, end: _dt.datetime) -> NewNotice:  # noqa: ANN001
    subject, body = templates.receipt(
        sub.plan_name,
        payment.price_amount,
        payment.tax_amount,
        payment.credit_applied,
        payment.amount,
        payment.currency,
        start,
        end,
    )
    return NewNotice(payment.customer_id, "receipt", f"receipt:{payment.id}", subject, body)


def _success_event(
    actor: Principal,
    action: str,
    now: _dt.datetime,
    sub,
    payment,  # noqa: ANN001
    start: _dt.datetime,
    end: _dt.datetime,
    events: list,
) -> dict:
    return audit_row(
        actor,
        action,
        now,
        subject_type="subscription",
        subject_id=sub.id,
        customer_id=sub.customer_id,
        policy_version=payment.policy_version,
        data={
            "payment_id": payment.id,
            "amount": payment.amount,
            "tax": payment.tax_amount,
            "period_start": start.isoformat(),
            "period_end": end.isoformat(),
        },
        events=events,
    )


def _paid_events(ctx: AppContext, type_: str, before, after, payment: dict, now: _dt.datetime) -> list:  # noqa: ANN001
    """A charge that started (`subscription.activated`) or renewed a subscription (`before`, as locked; `after`,
    as written): the subscription, the payment, and the access when its answer changes (a purchase gives it; a
    past_due subscription paid is active again, to its new period end)."""
    events = [(type_, as_read(after, now)), ("payment.succeeded", payment)]
    if before.customer_status == "active" and (before.status != "active" or type_ == "subscription.activated"):
        events.append(access_changed(facts_of(ctx, "active", None, after, now), now))
    return events


async def record_purchase_paid(
    conn: AsyncConnection,
    ctx: AppContext,
    sub,
    gateway_payment_id: str,
    now: _dt.datetime,
    actor: Principal = SYSTEM,
):
    """The gateway reports the purchase payment of an incomplete subscription paid (a signed
    `payment_intent.succeeded`), with `sub` locked by `lock_subscription_of_payment`: what `settle` records for
    it, the payment locked, checked still pending and written succeeded by one statement. Returns that payment,
    or None when it is not a pending purchase of an incomplete subscription any more: nothing is written then,
    and the caller settles it the general way (`lock_payment_of`, then `settle_locked`)."""
    if sub.status != "incomplete":
        return None
    start, end = period_bounds(now, sub.interval, 0)  # B1/B4: the periods are anchored at the payment
    payment = (
        await conn.execute(
            _PURCHASE_PAID,
            {
                "b_id": sub.locked_payment_id,
                "b_gateway_id": gateway_payment_id,
                "b_start": start,
                "b_end": end,
                "b_now": now,
            },
        )
    ).first()
    if payment is not None:
        await record_success(conn, ctx, payment, gateway_payment_id, now, actor, sub=sub, payment_recorded=True)
    return payment


async def record_success(
    conn: AsyncConnection,
    ctx: AppContext,
    payment,
    gateway_payment_id: str,
    now: _dt.datetime,
    actor: Principal,
    *,
    sub=None,  # noqa: ANN001
    payment_recorded: bool = False,
) -> None:
    """A charge succeeded (now, or late through a webhook): the subscription starts (purchase) or moves to the
    period paid for (renewal, retry). A payment for a period that is no longer the next one (the subscription
    ended, or that period was paid by another charge) is recorded for the books and for ops, and grants nothing.

    `sub`: the payment's subscription as `lock_for_settlement` returned it (locked in this transaction);
    without it, it is locked here. `payment_recorded`: `record_purchase_paid` wrote the payment already."""
    if sub is None:
        sub = (await conn.execute(_LOCK_SUBSCRIPTION, {"subscription_id": payment.subscription_id})).one()
    # B1/R2: what it buys (a purchase: the start of a subscription still incomplete; a renewal: the next period).
    outcome = late_success(
        payment.purpose,
        sub.status,
        payment.purpose != "purchase" and renews(sub, payment),
        payment.amount,
        payment.refunded_amount,
    )
    if outcome.action != "apply":
        await conn.execute(
            _PAYMENT_SUCCEEDED_WITHOUT_EFFECT, {"b_id": payment.id, "b_gateway_id": gateway_payment_id, "b_now": now}
        )
        await record(
            conn,
            actor,
            "payment.succeeded_without_effect",
            now,
            subject_type="payment",
            subject_id=payment.id,
            customer_id=payment.customer_id,
            policy_version=payment.policy_version,
            data={
                "subscription_status": sub.status,
                "period_index": payment.period_index,
                "correction": outcome.action,
            },
            events=[
                (
                    "payment.succeeded",
                    payment_to_api(
                        changed(payment, status="succeeded", gateway_payment_id=gateway_payment_id, updated_at=now)
                    ),
                )
            ],
        )
        if outcome.action == "refund":  # B1: it bought nothing; refunded in full, the customer told
            await book_correction(conn, ctx, sub, payment, outcome, now)
        return
    forfeited: list = []
    if payment.purpose == "purchase":
        # B1: the subscription starts at its first successful payment; its periods are anchored there (B4).
        anchor, index = now, 0
        start, end = period_bounds(anchor, sub.interval, index)
        if sub.has_running_trial:
            forfeited = await _forfeit_trials(conn, payment.customer_id, now)  # T6
        # T5: a paid subscription bars a later trial (the payment's customer is the subscription's).
        await mark_person(
            conn, person_identities(ctx.settings.identity_key, payment.customer_id, [sub.customer_email]), "paid", now
        )
    else:
        # B2/B4/B5: the next period, counted from the acquisition anchor (a late retry does not move it).
        anchor, index = sub.anchor_at, payment.period_index
        start, end = period_bounds(anchor, sub.interval, index - sub.anchor_index)  # C3: counted from the anchor
    started = (
        await conn.execute(
            _START_SUBSCRIPTION,
            {
                "b_id": sub.id,
                "b_anchor": anchor,
                "b_index": index,
                "b_start": start,
                "b_end": end,
                "b_tax": payment.tax_amount,
            },
        )
    ).one()
    if not payment_recorded:
        await conn.execute(
            _PAYMENT_SUCCEEDED,
            {"b_id": payment.id, "b_gateway_id": gateway_payment_id, "b_start": start, "b_end": end, "b_now": now},
        )
        payment_now = payment_to_api(
            changed(
                payment,
                status="succeeded",
                gateway_payment_id=gateway_payment_id,
                period_start=start,
                period_end=end,
                client_secret=None,
                updated_at=now,
            )
        )
    else:
        payment_now = payment_to_api(payment)
    if payment.credit_applied:  # R2: the credit is spent only by a charge that succeeded
        await insert_ignoring_conflict(conn, credit_entries, _credit_spend(payment, now), conflict_on=["payment_id"])
    await create_notices(conn, [_receipt(sub, payment, start, end)], now, ctx.system_clock.wall())
    action = "subscription.activated" if payment.purpose == "purchase" else "subscription.renewed"
    events = [("trial.forfeited", trial_to_api(trial)) for trial in forfeited]
    events += _paid_events(ctx, action, sub, started, payment_now, now)
    await record_many(conn, [_success_event(actor, action, now, sub, payment, start, end, events)])


async def _forfeit_trials(conn: AsyncConnection, customer_id: str, now: _dt.datetime) -> list:
    """T6: buying during a trial ends it at once; its unused days are not added to the paid period. Returns the
    trials forfeited, as written."""
    running = (await conn.execute(_RUNNING_TRIALS, {"customer_id": customer_id})).all()
    forfeited = []
    for trial in running:
        ended = forfeit_at(trial.ends_at, now)
        if ended is not None:  # a trial already past its end is left to expire (T3)
            await conn.execute(update(trials).where(trials.c.id == trial.id).values(status="forfeited", ended_at=ended))
            forfeited.append(changed(trial, status="forfeited", ended_at=ended))
    return forfeited


async def failed(
    conn: AsyncConnection,
    ctx: AppContext,
    payment,
    gateway_payment_id: str | None,
    code: str,
    now: _dt.datetime,
    actor: Principal = SYSTEM,
    *,
    sub=None,
) -> None:
    """`sub`: as in `record_success`."""
    if sub is None:
        sub = (await conn.execute(_LOCK_SUBSCRIPTION, {"subscription_id": payment.subscription_id})).one()
    # B1: a purchase whose PaymentIntent waited for the customer's action could still be completed: it is to be
    # cancelled at the gateway (by `app.payments.corrections`, once this commits, and by its job until confirmed).
    cancel_due = ctx.system_clock.wall() if payment.purpose == "purchase" and payment.gateway_payment_id else None
    await conn.execute(
        update(payments)
        .where(payments.c.id == payment.id)
        .values(
            status="failed",
            failure_code=code,
            gateway_payment_id=gateway_payment_id,
            client_secret=None,
            updated_at=now,
            gateway_cancel_due_at=cancel_due,
        )
    )
    events = [
        (
            "payment.failed",
            payment_to_api(
                changed(
                    payment, status="failed", failure_code=code, gateway_payment_id=gateway_payment_id, updated_at=now
                )
            ),
        )
    ]
    if payment.purpose == "purchase":
        # B1: a purchase whose payment fails leaves no active subscription and grants nothing.
        if sub.status == "incomplete":
            await conn.execute(
                update(subscriptions)
                .where(subscriptions.c.id == sub.id)
                .values(status="canceled", ended_at=now, ended_reason="payment_failed", claimed_until=None)
            )
        await record(
            conn,
            actor,
            "subscription.purchase_failed",
            now,
            subject_type="subscription",
            subject_id=sub.id,
            customer_id=sub.customer_id,
            policy_version=payment.policy_version,
            data={"payment_id": payment.id, "failure_code": code},
            events=events,
        )
        return
    if sub.status not in ("active", "past_due"):
        await record(
            conn,
            actor,
            "subscription.payment_failed",
            now,
            subject_type="subscription",
            subject_id=sub.id,
            customer_id=sub.customer_id,
            policy_version=payment.policy_version,
            data={"payment_id": payment.id, "failure_code": code, "outcome": sub.status},
            events=events,
        )
        return
    policy = ctx.policies.at(now)
    attempt = sub.failed_attempts + 1
    outcome = after_failed_charge(sub.current_period_end, attempt, policy, sub.charge_released_at)  # B5, R3
    ended_at = now
    # C1/B2: a cancellation is scheduled: one recorded before the period end while this charge's outcome was
    # unknown ends the subscription with that period; one asked in the gap after it ends it at this failure (a
    # past_due subscription ends at once when cancelled), never before it was asked. No retry either way.
    cancelled = failure_with_cancellation(sub.cancel_at_period_end, sub.canceled_at, sub.current_period_end, now)
    if cancelled is not None:
        outcome, ended_at = cancelled
    name = sub.plan_name
    subject, body = templates.payment_failed(name, payment.amount, payment.currency, outcome.next_retry_at)
    notices = [NewNotice(sub.customer_id, "payment_failed", f"payment_failed:{payment.id}", subject, body)]
    if outcome.status == "past_due":
        values = {
            "status": "past_due",
            "failed_attempts": attempt,
            "next_retry_at": outcome.next_retry_at,
            "claimed_until": None,
        }
    else:
        values = {
            "status": "canceled",
            "failed_attempts": attempt,
            "next_retry_at": None,
            "ended_at": ended_at,
            "ended_reason": outcome.ended_reason,
            "claimed_until": None,
        }
        subject, body = templates.subscription_ended(name, outcome.ended_reason)
        notices.append(NewNotice(sub.customer_id, "subscription_ended", f"subscription_ended:{sub.id}", subject, body))
    await conn.execute(update(subscriptions).where(subscriptions.c.id == sub.id).values(values))
    after = changed(sub, **values)
    if sub.status != after.status:  # B5: past_due at the first failure; ended after the last retry
        events.append(
            ("subscription.past_due" if after.status == "past_due" else "subscription.ended", as_read(after, now))
        )
        if sub.customer_status == "active":
            events.append(
                access_changed(facts_of(ctx, "active", None, after if after.status == "past_due" else None, now), now)
            )
    await create_notices(conn, notices, now, ctx.system_clock.wall())
    await record(
        conn,
        actor,
        "subscription.payment_failed",
        now,
        subject_type="subscription",
        subject_id=sub.id,
        customer_id=sub.customer_id,
        policy_version=policy.version,
        data={
            "payment_id": payment.id,
            "failure_code": code,
            "attempt": attempt,
            "outcome": outcome.status,
            "next_retry_at": outcome.next_retry_at.isoformat() if outcome.next_retry_at else None,
        },
        events=events,
    )
