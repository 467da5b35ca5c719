"""Subscription use cases: purchase (B1, B3, T6), cancel (C1, R1), resume (C2), change the payment method."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from app.access.service import access_changed
from app.audit.service import record
from app.auth import Principal
from app.context import AppContext
from app.credits import repository as credit_repo
from app.customers import repository as customer_repo
from app.customers.rules import require_standing
from app.errors import (
    CardDeclined,
    ChargeInProgress,
    SubscriptionEnded,
    SubscriptionExists,
    refuse_unless,
)
from app.gateways.base import ChargeResult, GatewayUnavailable
from app.idempotency import resumable, resumed
from app.ids import new_id
from app.notices import templates
from app.notices.service import NewNotice, create_notices, notice_row
from app.payments import repository as payment_repo
from app.payments import steps
from app.payments.corrections import cancel_at_gateway
from app.payments.repository import PaymentRow
from app.payments.schemas import to_api as payment_to_api
from app.plan_changes import service as plan_change_service
from app.plans import repository as plan_repo
from app.subscriptions import charging, repository
from app.subscriptions.repository import SubscriptionRow
from app.subscriptions.schemas import PaymentMethodUpdate, SubscriptionCreate, as_read, subscription_facts
from app.uow import UnitOfWork
from policies import (
    AccessFacts,
    CustomerAction,
    CustomerStatus,
    EndedReason,
    PaymentPurpose,
    PaymentStatus,
    SubscriptionStatus,
    billing_address_decision,
    cancellation_refund,
    subscription_at,
    tax_for,
)
from policies.settlement import charge_in_flight

# While a purchase's first charge is in flight, an identical request is refused (409) rather than charged again;
# a crash mid-flight frees the purchase for a retry after this long.
PURCHASE_LEASE = _dt.timedelta(minutes=2)


async def _gateway_customer(ctx: AppContext, principal: Principal, customer_id: str) -> str:
    """The gateway's customer for ours, created once (the gateway call is idempotent per customer): read, then
    the three steps of app/payments/steps.py (nothing to reserve: the call is keyed by our customer's id)."""
    async with ctx.db.read() as conn:
        customer = await customer_repo.get_visible(conn, principal, customer_id)
    if customer.gateway_customer_id:
        return customer.gateway_customer_id
    created = await steps.call(ctx.gateway.create_customer, customer.id)
    await steps.settle(ctx, _record_gateway_customer, customer.id, created)
    return created


async def _record_gateway_customer(uow: UnitOfWork, customer_id: str, created: str) -> None:
    await payment_repo.record_gateway_customer(uow.conn, customer_id, created)


async def purchase(
    ctx: AppContext, principal: Principal, body: SubscriptionCreate
) -> tuple[SubscriptionRow, str | None]:
    """B1: charge the first period now; the subscription starts only when that payment succeeds. The three steps
    of app/payments/steps.py: reserve the subscription and its pending payment, charge, settle. Repeated with the
    same Idempotency-Key after failing partway (the charge made, its outcome not recorded), it charges the
    unanswered first payment again with the same gateway key, which answers with the first charge's result."""
    resumable()
    gateway_customer = await _gateway_customer(ctx, principal, body.customer_id)
    sub_id, payment_row = await steps.reserve(ctx, _reserve_purchase, principal, body)
    try:
        result = await steps.call(charging.charge, ctx, payment_row, gateway_customer, off_session=False)
    except GatewayUnavailable:
        # No answer: release the purchase so that the same request, repeated, charges again with the same key.
        await steps.settle(ctx, _release_purchase, sub_id)
        raise
    status, sub_row = await steps.settle(ctx, _settle_purchase, principal, sub_id, payment_row.id, result)
    if status == PaymentStatus.FAILED:
        raise CardDeclined(
            f"{result.message or 'The payment was declined.'} Decline code: {result.decline_code}.",
            decline_code=result.decline_code,
            payment_id=payment_row.id,
        )
    return sub_row, (result.client_secret if status == PaymentStatus.PENDING else None)


async def _reserve_purchase(uow: UnitOfWork, principal: Principal, body: SubscriptionCreate) -> tuple[str, PaymentRow]:
    """Step 1 of a purchase: the subscription, `incomplete`, and its pending first payment, leased to this
    request while its charge is in flight; or, for the same purchase repeated after the gateway gave no answer,
    the pending payment it made (charged again with its key)."""
    conn = uow.conn
    customer = await customer_repo.get_visible(conn, principal, body.customer_id, for_update=True)
    require_standing(CustomerAction.BUY, customer.status)  # R3: a suspended or terminated account cannot buy
    refuse_unless(billing_address_decision(customer.tax_id, customer.address))  # I1: a business gives its address
    plan = await plan_repo.get_by_code(conn, body.plan, active_only=True)
    live = await repository.live_for_customer(conn, customer.id)
    unanswered = await _unanswered_purchase(uow, live, plan.code, body.payment_method)
    wall = uow.wall()
    # A retry with the key of the attempt that holds the lease: that attempt has ended (app/idempotency.py).
    if (
        live is not None
        and unanswered is not None
        and (charge_in_flight(live.claimed_until, wall) is None or resumed())
    ):
        # The same purchase again after the gateway gave no answer: charge with the same idempotency key,
        # which returns the first charge's result if it went through, instead of refusing or charging twice.
        await repository.lease(conn, [live.id], wall + PURCHASE_LEASE)
        return live.id, unanswered
    if live is not None:  # an identical purchase whose charge is still in flight, or any other
        raise SubscriptionExists(
            f"the customer already has subscription {live.id} ({live.status})", subscription_id=live.id
        )
    return await _create_incomplete(uow, principal, customer, plan, body, lease_until=wall + PURCHASE_LEASE)


async def _release_purchase(uow: UnitOfWork, sub_id: str) -> None:
    """After a charge with no answer: the lease is given back, so the same request repeated charges again."""
    await repository.lease(uow.conn, [sub_id], None)


async def _settle_purchase(
    uow: UnitOfWork,
    principal: Principal,
    sub_id: str,
    payment_id: str,
    result: ChargeResult,
) -> tuple[str, SubscriptionRow]:
    """Step 3 of a purchase: the gateway's answer recorded; the payment's status and the subscription after it."""
    status = await charging.settle(uow.conn, uow.ctx, payment_id, result, uow.now, principal)
    return status, await repository.get(uow.conn, sub_id)


async def _unanswered_purchase(
    uow: UnitOfWork, live: SubscriptionRow | None, plan_code: str, payment_method: str
) -> PaymentRow | None:
    """The pending first payment of `live` if the gateway never answered it and the request is the same."""
    if (
        live is None
        or live.status != SubscriptionStatus.INCOMPLETE
        or live.plan_code != plan_code
        or live.payment_method != payment_method
    ):
        return None
    return await payment_repo.unanswered_purchase(uow.conn, live.id)


async def _create_incomplete(
    uow: UnitOfWork,
    principal: Principal,
    customer: Any,
    plan: Any,
    body: SubscriptionCreate,
    *,
    lease_until: _dt.datetime,
) -> tuple[str, PaymentRow]:
    """B1/B3/P2: the subscription waits, `incomplete`, for its first payment, at today's list price plus tax."""
    conn, ctx, now = uow.conn, uow.ctx, uow.now
    policy = ctx.policies.at(now)
    sub_id = new_id("sub")
    sub = {
        "id": sub_id,
        "customer_id": customer.id,
        "plan_id": plan.id,
        "plan_code": plan.code,
        "interval": plan.interval,
        "status": SubscriptionStatus.INCOMPLETE,
        "price_amount": plan.amount,
        "currency": plan.currency,  # B3: the list price of the day, locked
        "tax_amount": tax_for(plan.amount, customer.country, policy),  # P2
        "payment_method": body.payment_method,
        "anchor_at": None,
        "period_index": 0,
        "current_period_start": None,
        "current_period_end": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "ended_at": None,
        "ended_reason": None,
        "failed_attempts": 0,
        "next_retry_at": None,
        "claimed_until": lease_until,
        "policy_version": policy.version,
        "created_at": now,
    }
    if not await repository.insert(conn, sub):  # a concurrent purchase for the same customer won the live slot
        raise SubscriptionExists("the customer already has a live subscription")
    sub_row = await repository.get(conn, sub_id)
    credit = (await credit_repo.balances(conn, [customer.id], plan.currency))[customer.id]
    payment = charging.new_payment(
        ctx,
        sub_row,
        customer,
        purpose=PaymentPurpose.PURCHASE,
        period_index=0,
        attempt=1,
        now=now,
        credit_balance=credit,
    )
    await payment_repo.insert(conn, payment)
    await record(
        conn,
        principal,
        "subscription.requested",
        now,
        subject_type="subscription",
        subject_id=sub_id,
        customer_id=customer.id,
        policy_version=policy.version,
        data={"plan": plan.code, "price": plan.amount, "tax": sub["tax_amount"]},
    )
    return sub_id, await payment_repo.get(conn, payment["id"])


async def cancel(uow: UnitOfWork, principal: Principal, subscription_id: str) -> tuple[SubscriptionRow, _dt.datetime]:
    """C1: cancel at any time; effective at the end of the period the subscription is in (B2: past its stored
    period end, the next one: the renewal due then is still made), access until then, no further charge. A
    past_due subscription ends at once, its retries stopped, with the ending confirmation.
    R1: nothing is refunded, not even part of the period. B1: an unpaid purchase dropped has its PaymentIntent
    cancelled at the gateway once this commits. Returns the subscription and the time it was read at."""
    conn, ctx, now = uow.conn, uow.ctx, uow.now
    sub = await repository.get_visible_named(conn, principal, subscription_id, for_update=True)
    if sub.status == SubscriptionStatus.CANCELED:
        raise SubscriptionEnded(f"subscription {sub.id} ended at {_iso(sub.ended_at)}")
    state = subscription_at(subscription_facts(sub), now)
    if (
        state.status == SubscriptionStatus.CANCELED
    ):  # the scheduled cancellation took effect, even if the job has not run yet
        raise SubscriptionEnded(f"subscription {sub.id} ended at {_iso(state.ended_at)}")
    if sub.cancel_at_period_end:
        return sub, now
    _refuse_while_charging(ctx, sub)
    refunded = cancellation_refund(sub.price_amount)  # R1: always 0, no proration
    events: list[Any]
    notices: list[dict[str, Any]] = []
    if sub.status in (SubscriptionStatus.INCOMPLETE, SubscriptionStatus.PAST_DUE):
        # Nothing paid is running: an unpaid purchase is dropped, and a subscription in dunning stops being
        # retried. Either way it ends now, with no charge.
        changed = await repository.end_now(conn, sub.id, now)
        dropped = await payment_repo.fail_pending(
            conn, code="canceled", now=now, wall=ctx.system_clock.wall(), subscription_ids=[sub.id]
        )
        abandoned = [p.id for p in dropped if p.gateway_cancel_due_at is not None]
        if abandoned:  # B1: the gateway is called once this commits, outside the transaction
            uow.after_commit(cancel_at_gateway, ctx, payment_ids=abandoned)
        if sub.status == SubscriptionStatus.PAST_DUE:  # C1: the customer gets the ending confirmation
            subject, body = templates.subscription_ended(sub.plan_name, EndedReason.CANCELED)
            await create_notices(
                conn,
                [NewNotice(sub.customer_id, "subscription_ended", f"subscription_ended:{sub.id}", subject, body)],
                now,
                ctx.system_clock.wall(),
            )
        action, effective_at = "subscription.canceled", now
        # A subscription in dunning ends, and its grace with it (B5); an unpaid purchase never began, its
        # payment fails.
        events = [("payment.failed", payment_to_api(p)) for p in dropped]
        if sub.status == SubscriptionStatus.PAST_DUE:
            events.append(("subscription.ended", as_read(changed, now)))
            standing = await repository.customer_status(conn, sub.customer_id)
            if standing == CustomerStatus.ACTIVE:  # otherwise the standing decides the access, as before
                events.append(access_changed(AccessFacts(customer_status=CustomerStatus.ACTIVE), now))
    else:
        changed = await repository.set_cancellation(conn, sub.id, scheduled=True, at=now)
        await plan_change_service.withdraw_for_cancellation(uow, principal, sub)  # C3: cancelling withdraws a change
        # B2: the period end of the period it is in now (past the stored end, the renewed period's).
        if state.period_end is None:
            raise ValueError(f"subscription {sub.id} is {sub.status} without a period end")
        effective_at = state.period_end
        subject, body = templates.cancellation_scheduled(sub.plan_name, effective_at)
        # Written with the audit row and the event (`record`: one statement on PostgreSQL).
        notices.append(
            notice_row(
                NewNotice(
                    sub.customer_id,
                    "cancellation_scheduled",
                    f"cancellation_scheduled:{sub.id}:{now.isoformat()}",
                    subject,
                    body,
                ),
                now,
                ctx.system_clock.wall(),
            )
        )
        action = "subscription.cancel_scheduled"
        events = [("subscription.cancellation_scheduled", as_read(changed, now))]
    await record(
        conn,
        principal,
        action,
        now,
        subject_type="subscription",
        subject_id=sub.id,
        customer_id=sub.customer_id,
        policy_version=ctx.policies.at(now).version,
        data={"refunded": refunded, "effective_at": effective_at.isoformat()},
        events=events,
        notices=notices,
    )
    return changed, now


def _iso(at: _dt.datetime | None) -> str:
    return at.isoformat() if at is not None else "None"


def _refuse_while_charging(ctx: AppContext, sub: SubscriptionRow) -> None:
    """C1 (`policies.settlement.charge_in_flight`): while a charge for the subscription is in flight (a purchase,
    a renewal or a retry holds its lease), the cancellation is refused for the moment (409 with Retry-After)
    rather than confirmed for a period the charge may already be paying for."""
    wait = charge_in_flight(sub.claimed_until, ctx.system_clock.wall())
    if wait is not None:
        raise ChargeInProgress(f"a charge for subscription {sub.id} is in flight; retry in {wait} s", retry_after=wait)


async def resume(uow: UnitOfWork, principal: Principal, subscription_id: str) -> tuple[SubscriptionRow, _dt.datetime]:
    """C2: until the cancellation takes effect (the end of the period it was asked in, B2), it can be withdrawn;
    the subscription renews as if nothing happened. Returns the subscription and the time it was read at."""
    conn, now = uow.conn, uow.now
    sub = await repository.get_visible(conn, principal, subscription_id, for_update=True)
    if sub.status == SubscriptionStatus.CANCELED:
        raise SubscriptionEnded(f"subscription {sub.id} has ended and cannot be resumed")
    state = subscription_at(subscription_facts(sub), now)
    if state.status == SubscriptionStatus.CANCELED:
        # The cancellation took effect at its period end, even if the job has not recorded it yet.
        raise SubscriptionEnded(f"subscription {sub.id} ended at {_iso(state.ended_at)}")
    if not sub.cancel_at_period_end:
        return sub, now
    changed = await repository.set_cancellation(conn, sub.id, scheduled=False, at=None)
    await record(
        conn,
        principal,
        "subscription.resumed",
        now,
        subject_type="subscription",
        subject_id=sub.id,
        customer_id=sub.customer_id,
        events=[("subscription.resumed", as_read(changed, now))],
    )
    return changed, now


async def change_payment_method(
    uow: UnitOfWork, principal: Principal, subscription_id: str, body: PaymentMethodUpdate
) -> SubscriptionRow:
    """Later charges, including retries of a failed renewal (B5), use the new method."""
    conn, now = uow.conn, uow.now
    sub = await repository.get_visible(conn, principal, subscription_id, for_update=True)
    if sub.status == SubscriptionStatus.CANCELED:
        raise SubscriptionEnded(f"subscription {sub.id} has ended")
    changed = await repository.set_payment_method(conn, sub.id, body.payment_method)
    await record(
        conn,
        principal,
        "subscription.payment_method_changed",
        now,
        subject_type="subscription",
        subject_id=sub.id,
        customer_id=sub.customer_id,
    )
    return changed
