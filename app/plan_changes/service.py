"""Plan change use cases: a change at the period end (C3) and its withdrawal, and the hooks other use cases call:
a cancellation withdraws a pending change (C1/C3), and the renewal batch moves the subscriptions whose change is
due to the new plan before charging them (B2/B3/B4/C3), set-based."""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.audit.service import SYSTEM, audit_row, changed, record, record_many
from app.auth import Principal
from app.context import AppContext
from app.credits import repository as credit_repo
from app.customers import repository as customer_repo
from app.errors import CardDeclined, ChargeInProgress, DomainError, SubscriptionEnded
from app.gateways.base import ChargeResult, GatewayUnavailable
from app.ids import new_id
from app.notices import templates
from app.notices.service import NewNotice, create_notices
from app.notices.templates import money
from app.payments import repository as payment_repo
from app.payments import steps
from app.payments.corrections import cancel_at_gateway
from app.payments.schemas import to_api as payment_to_api
from app.plan_changes import repository
from app.plan_changes.repository import NOW, PERIOD_END, PlanChangeRow
from app.plan_changes.schemas import PlanChangeCreate, event_object
from app.plans import repository as plan_repo
from app.refunds.service import book_correction
from app.subscriptions import charging
from app.subscriptions import repository as subscription_repo
from app.subscriptions.repository import SubscriptionRow
from app.subscriptions.schemas import subscription_facts
from app.uow import UnitOfWork, unit_of_work
from policies import (
    ACTION_WINDOW,
    PlanOffer,
    SubscriptionTerms,
    change_decision,
    forfeited,
    late_success,
    period_bounds,
    subscription_at,
)
from policies.settlement import charge_in_flight
from policies.states import (
    CustomerStatus,
    Interval,
    PaymentPurpose,
    PaymentStatus,
    PlanChangeStatus,
    SubscriptionStatus,
)


class ChangeRefused(DomainError):
    """C3/C4: a plan change refused; `code` as the contract names it (409, nothing changed)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def _date(value: _dt.datetime) -> str:
    return value.strftime("%d %B %Y, %H:%M UTC")


def _scheduled_notice(
    customer_id: str, change_id: str, plan_name: str, price: int, currency: str, interval: str, at: _dt.datetime
) -> NewNotice:
    """C3/R1: the change is scheduled for the period end, at the price of the day, locked."""
    subject = f"Your plan changes to {plan_name} on {_date(at)}"
    body = (
        f"Your subscription moves to {plan_name} on {_date(at)}, at the end of the current period. From then it "
        f"renews at {money(price, currency)} per {interval}, the price of today, locked. Until then your plan, "
        "price and access stay as they are, and you can withdraw the change. Nothing is refunded or credited."
    )
    return NewNotice(customer_id, "plan_change_scheduled", f"plan_change_scheduled:{change_id}", subject, body)


def _changed_notice(
    customer_id: str, change_id: str, plan_name: str, price: int, currency: str, interval: str, start: _dt.datetime
) -> NewNotice:
    """C3: the change took effect at the period end."""
    subject = f"Your subscription is now on {plan_name}"
    body = (
        f"From {_date(start)} your subscription is on {plan_name}, renewing at {money(price, currency)} per "
        f"{interval}. Nothing was refunded or credited for the previous plan."
    )
    return NewNotice(customer_id, "plan_changed", f"plan_changed:{change_id}", subject, body)


def _terms(sub, now: _dt.datetime) -> SubscriptionTerms:  # noqa: ANN001
    """The subscription's facts for `policies.change_decision` (an incomplete one has no period yet: any will do,
    the decision refuses it before looking at one)."""
    start, end = sub.current_period_start, sub.current_period_end
    if start is None or end is None:
        start, end = now, now + _dt.timedelta(seconds=1)
    return SubscriptionTerms(
        status=sub.status,
        plan=sub.plan_code,
        price=sub.price_amount,
        currency=sub.currency,
        interval=sub.interval,
        anchor=start,
        current_period_start=start,
        current_period_end=end,
    )


def _wait(waiting: PlanChangeRow, now: _dt.datetime) -> int:
    """The seconds until an upgrade waiting for the customer's action expires (C4), at least one."""
    expires_at = waiting.expires_at or now
    return max(1, math.ceil((expires_at - now).total_seconds()))


def _forfeited(sub: SubscriptionRow, now: _dt.datetime) -> tuple[int, int]:
    """C4/R1: the whole days left of the subscription's current period at `now`, and their value (an active
    subscription has a period: without one nothing is left)."""
    if sub.current_period_start is None or sub.current_period_end is None:
        return 0, 0
    return forfeited(sub.current_period_start, sub.current_period_end, now, sub.price_amount)


def _refuse_while_charging(uow: UnitOfWork, sub) -> None:  # noqa: ANN001
    """As a cancellation (C1): while a charge for the subscription is in flight its outcome decides which period
    a change would follow, so the change waits (409 with Retry-After)."""
    wait = charge_in_flight(sub.claimed_until, uow.wall())
    if wait is not None:
        raise ChargeInProgress(f"a charge for subscription {sub.id} is in flight; retry in {wait} s", retry_after=wait)


def _refuse_while_due(sub, change, now: _dt.datetime) -> None:  # noqa: ANN001
    """B2/C3: a change whose period end has come has taken effect (its renewal is being charged); it can no longer
    be withdrawn or replaced, and another waits until that renewal is recorded (409 with Retry-After)."""
    if change is not None and change.effective_at is not None and change.effective_at <= now:
        raise ChargeInProgress(
            f"the plan change of subscription {sub.id} took effect at {change.effective_at.isoformat()}; its "
            "renewal is being charged, retry shortly",
            retry_after=60,
        )


async def _decide(uow: UnitOfWork, principal: Principal, subscription_id: str, body: PlanChangeCreate):  # noqa: ANN202
    """C3/C4: the subscription (locked), the target plan, the policy and where the subscription stands now, once
    `policies.change_decision` allowed the change; otherwise the refusal (409, nothing changed)."""
    conn, ctx, now = uow.conn, uow.ctx, uow.now
    sub = await subscription_repo.get_visible(conn, principal, subscription_id, for_update=True)
    customer_status = await subscription_repo.customer_status(conn, sub.customer_id)
    # B2: from a period end the subscription is in its next period, whether or not its renewal was recorded.
    state = subscription_at(subscription_facts(sub), now)
    if state.status == SubscriptionStatus.CANCELED and sub.status != SubscriptionStatus.CANCELED:
        raise SubscriptionEnded(f"subscription {sub.id} ended at {state.ended_at}")
    target = await plan_repo.find_by_code(conn, body.plan)
    offer = PlanOffer(
        plan=body.plan,
        price=target.amount if target is not None else 0,
        currency=target.currency if target is not None else sub.currency,
        interval=Interval(target.interval if target is not None else sub.interval),
        active=target is not None and target.active,
    )
    policy = ctx.policies.at(now)
    decision = change_decision(_terms(sub, now), customer_status, offer, body.when, now, policy)
    if not decision.allowed:
        raise ChangeRefused(decision.code or "error", decision.reason)
    assert target is not None  # the decision refused an unknown plan
    return sub, target, policy, state


async def change(  # noqa: ANN201
    uow: UnitOfWork, principal: Principal, subscription_id: str, body: PlanChangeCreate, reason: str | None = None
):
    """C3: move to another plan at the end of the current period, at the new plan's list price of today (locked,
    B3); a pending change is replaced and a scheduled cancellation withdrawn (C1). Refusals (409, nothing changed)
    as `policies.change_decision` decides them. `reason`: why ops asked it (the console), in the audit trail.
    Returns (subscription, its pending change, now)."""
    conn, now = uow.conn, uow.now
    sub, target, policy, state = await _decide(uow, principal, subscription_id, body)
    waiting = await repository.pending(conn, sub.id, NOW)
    if waiting is not None:  # C4: an upgrade waits for the customer's action; it goes first (or is withdrawn)
        wait = _wait(waiting, now)
        raise ChargeInProgress(f"an upgrade of subscription {sub.id} waits for the customer's action", retry_after=wait)
    pending = await repository.pending(conn, sub.id)
    _refuse_while_due(sub, pending, now)
    _refuse_while_charging(uow, sub)
    effective_at = state.period_end  # C3/B2: the end of the period it is in now (past the stored end: the next)
    assert effective_at is not None  # an active subscription has a period
    replaced = await repository.decide(conn, [pending.id] if pending else [], PlanChangeStatus.WITHDRAWN, now)
    withdrew_cancellation = bool(sub.cancel_at_period_end)
    if withdrew_cancellation:  # C3: a change withdraws the scheduled cancellation
        sub = await subscription_repo.set_cancellation(conn, sub.id, scheduled=False, at=None)
    row = {
        "id": new_id("pchg"),
        "subscription_id": sub.id,
        "customer_id": sub.customer_id,
        "kind": PERIOD_END,
        "status": PlanChangeStatus.PENDING,
        "plan_id": target.id,
        "plan_code": target.code,
        "interval": target.interval,
        "price_amount": target.amount,  # B3: today's list price, locked
        "currency": target.currency,
        "asked_at": now,
        "effective_at": effective_at,
        "expires_at": None,
        "payment_id": None,
        "decided_at": None,
        "asked_by": principal.sub,
        "policy_version": policy.version,
    }
    await repository.add(conn, row)
    new = changed(row)
    await create_notices(
        conn,
        [
            _scheduled_notice(
                sub.customer_id,
                row["id"],
                target.name,
                target.amount,
                target.currency,
                target.interval,
                effective_at,
            )
        ],
        now,
        uow.wall(),
    )
    await record(
        conn,
        principal,
        "subscription.plan_change_scheduled",
        now,
        subject_type="subscription",
        subject_id=sub.id,
        customer_id=sub.customer_id,
        policy_version=policy.version,
        reason=reason,
        data={
            "change_id": row["id"],
            "from_plan": sub.plan_code,
            "plan": target.code,
            "price": target.amount,
            "effective_at": effective_at.isoformat(),
            "replaced_change": replaced[0].id if replaced else None,
            "withdrew_cancellation": withdrew_cancellation,
            "refunded": 0,  # R1
        },
        events=[("subscription.plan_change_scheduled", event_object(sub, new, now))],
    )
    return sub, new, now


async def withdraw(uow: UnitOfWork, principal: Principal, subscription_id: str, reason: str | None = None):  # noqa: ANN201
    """C3 (as C2): the pending change is withdrawn; the subscription renews on its plan as if none was asked.
    Without one, nothing changes. `reason`: why ops withdrew it (the console), in the audit trail. Returns
    (subscription, now)."""
    conn, ctx, now = uow.conn, uow.ctx, uow.now
    sub = await subscription_repo.get_visible(conn, principal, subscription_id, for_update=True)
    await abandon_upgrade(uow, principal, sub, "withdrawn")  # C4: an upgrade waiting for action, given up
    pending = await repository.pending(conn, sub.id)
    if pending is None:
        return sub, now
    _refuse_while_due(sub, pending, now)
    await repository.decide(conn, [pending.id], PlanChangeStatus.WITHDRAWN, now)
    await record(
        conn,
        principal,
        "subscription.plan_change_withdrawn",
        now,
        subject_type="subscription",
        subject_id=sub.id,
        customer_id=sub.customer_id,
        policy_version=ctx.policies.at(now).version,
        reason=reason,
        data={"change_id": pending.id, "plan": pending.plan_code},
        events=[("subscription.plan_change_withdrawn", event_object(sub, None, now))],
    )
    return sub, now


async def withdraw_for_cancellation(uow: UnitOfWork, principal: Principal, sub) -> str | None:  # noqa: ANN001
    """C1/C3: a cancellation withdraws the pending change (one not yet in effect); returns its id, if any."""
    conn, now = uow.conn, uow.now
    await abandon_upgrade(uow, principal, sub, "withdrawn")  # C4: an upgrade waiting for action, given up
    pending = await repository.pending(conn, sub.id)
    if pending is None or (pending.effective_at is not None and pending.effective_at <= now):
        return None
    await repository.decide(conn, [pending.id], PlanChangeStatus.WITHDRAWN, now)
    await record(
        conn,
        principal,
        "subscription.plan_change_withdrawn",
        now,
        subject_type="subscription",
        subject_id=sub.id,
        customer_id=sub.customer_id,
        policy_version=uow.ctx.policies.at(now).version,
        data={"change_id": pending.id, "plan": pending.plan_code, "by": "cancellation"},
    )
    return pending.id


async def apply_due_changes(uow: UnitOfWork, due: list) -> list:
    """B2/B3/B4/C3, in the renewal batch, before its payments are written: each subscription whose pending change
    takes effect at its current period end moves to the new plan, interval and locked price, its periods counted
    from that period end (the new anchor, at index period_index + 1). Set-based: one read of the changes, one
    update of the subscriptions, one of the changes, one insert each of notices and audit rows. Returns `due` with
    the moved subscriptions as written (the renewal then charges the new price)."""
    conn, now = uow.conn, uow.now
    ends = {s.id: s.current_period_end for s in due}
    by_sub = {
        c.subscription_id: c
        for c in await repository.pending_period_end(conn, list(ends))
        if ends[c.subscription_id] == c.effective_at  # due at this period end (one asked in the gap: the next)
    }
    if not by_sub:
        return due
    names = await plan_repo.names(conn, {c.plan_id for c in by_sub.values()})
    moves, notices, audits, result = [], [], [], []
    for s in due:
        c = by_sub.get(s.id)
        if c is None:
            result.append(s)
            continue
        values = {
            "plan_id": c.plan_id,
            "plan_code": c.plan_code,
            "interval": c.interval,
            "price_amount": c.price_amount,
            "anchor_at": s.current_period_end,
            "anchor_index": s.period_index + 1,
        }
        moves.append(
            {
                "b_id": s.id,
                "b_plan_id": c.plan_id,
                "b_plan_code": c.plan_code,
                "b_interval": c.interval,
                "b_price": c.price_amount,
                "b_anchor": s.current_period_end,
                "b_anchor_index": s.period_index + 1,
            }
        )
        moved = changed(s, **values)
        result.append(moved)
        notices.append(
            _changed_notice(
                s.customer_id, c.id, names[c.plan_id], c.price_amount, c.currency, c.interval, s.current_period_end
            )
        )
        audits.append(
            audit_row(
                SYSTEM,
                "subscription.plan_changed",
                now,
                subject_type="subscription",
                subject_id=s.id,
                customer_id=s.customer_id,
                policy_version=c.policy_version,
                data={
                    "change_id": c.id,
                    "from_plan": s.plan_code,
                    "plan": c.plan_code,
                    "price": c.price_amount,
                    "effective_at": s.current_period_end.isoformat(),
                },
                events=[("subscription.plan_changed", event_object(moved, None, now))],
            )
        )
    await repository.move_to_plans(conn, moves)
    await repository.decide(conn, [c.id for c in by_sub.values()], PlanChangeStatus.APPLIED, now)
    await create_notices(conn, notices, now, uow.wall())
    await record_many(conn, audits)
    return result


# ---------------------------------------------------------------------------------------------------- C4: now

UPGRADE_LEASE = _dt.timedelta(minutes=2)  # as a purchase's: a crash mid-charge frees the subscription after it


@dataclass(frozen=True)
class Upgrade:
    """What `upgrade` answers: the subscription, the change (pending while it waits for action), the charge's
    client secret when it does, and what of the old period was forfeited (C4, information only)."""

    sub: Any
    change: Any
    now: _dt.datetime
    client_secret: str | None = None
    forfeited_days: int | None = None
    forfeited_value: int | None = None


async def upgrade(ctx: AppContext, principal: Principal, subscription_id: str, body: PlanChangeCreate) -> Upgrade:
    """C4/B1: move to a plan of a higher yearly value at once: its full price (tax P2, credits first R2) charged
    now, through the three steps of app/payments/steps.py (reserve the change and its pending payment under the
    subscription's lease, charge, settle). Only a successful payment changes the plan; a decline changes
    nothing (402); a payment needing the customer's action waits (23 h or the period end) and is completed by the
    webhook or expires. While the charge is in flight, a renewal, a cancellation or another change of the
    subscription waits (its lease, as a purchase's)."""
    change_id, payment, gateway_customer = await steps.reserve(ctx, _reserve_upgrade, principal, subscription_id, body)
    try:
        result = await steps.call(charging.charge, ctx, payment, gateway_customer, off_session=False)
    except GatewayUnavailable:
        # No answer: the lease is given back; the change waits, pending, until it expires (and a success that
        # still comes is then refunded, B1).
        await steps.settle(ctx, _release, payment.subscription_id)
        raise
    done = await steps.settle(ctx, _settle_upgrade_request, principal, change_id, payment.id, result)
    if done is None:  # declined: recorded (committed), and nothing changed
        raise CardDeclined(
            f"{result.message or 'The payment was declined.'} Decline code: {result.decline_code}.",
            decline_code=result.decline_code,
            payment_id=payment.id,
        )
    return done


async def _reserve_upgrade(uow: UnitOfWork, principal: Principal, subscription_id: str, body: PlanChangeCreate):  # noqa: ANN202
    conn, ctx, now = uow.conn, uow.ctx, uow.now
    sub, target, policy, _state = await _decide(uow, principal, subscription_id, body)
    if sub.current_period_end <= now:  # B2: the renewal due at the period end is charged first
        raise ChargeInProgress(f"the renewal of subscription {sub.id} is due; retry shortly", retry_after=60)
    _refuse_while_charging(uow, sub)
    customer = await customer_repo.get(conn, sub.customer_id)
    waiting = await repository.pending(conn, sub.id, NOW)
    if waiting is not None:
        unanswered = await payment_repo.unanswered(conn, waiting.payment_id) if waiting.payment_id else None
        if unanswered is not None and waiting.plan_code == target.code:
            # The same upgrade again after the gateway gave no answer: charged again with the same key, which
            # answers with the first charge's result if it went through (never charged twice).
            await subscription_repo.lease(conn, [sub.id], uow.wall() + UPGRADE_LEASE)
            return waiting.id, unanswered, customer.gateway_customer_id or ""
        # Another upgrade waits for the customer's action: it goes first (or is withdrawn).
        wait = _wait(waiting, now)
        raise ChargeInProgress(f"an upgrade of subscription {sub.id} waits for the customer's action", retry_after=wait)
    credit = (await credit_repo.balances(conn, [customer.id], sub.currency))[customer.id]
    change_id = new_id("pchg")
    payment = charging.new_payment(
        ctx,
        changed(sub, price_amount=target.amount),  # B3: the new plan's list price of today
        customer,
        purpose=PaymentPurpose.UPGRADE,
        period_index=sub.period_index + 1,
        attempt=1,
        now=now,
        credit_balance=credit,
    )
    payment["idempotency_key"] = f"{sub.id}:upgrade-{change_id}"
    await payment_repo.insert(conn, payment)
    await repository.add(
        conn,
        {
            "id": change_id,
            "subscription_id": sub.id,
            "customer_id": sub.customer_id,
            "kind": NOW,
            "status": PlanChangeStatus.PENDING,
            "plan_id": target.id,
            "plan_code": target.code,
            "interval": target.interval,
            "price_amount": target.amount,
            "currency": target.currency,
            "asked_at": now,
            "effective_at": None,
            "expires_at": min(now + ACTION_WINDOW, sub.current_period_end),  # C4: 23 h or the period end
            "payment_id": payment["id"],
            "decided_at": None,
            "asked_by": principal.sub,
            "policy_version": policy.version,
        },
    )
    await subscription_repo.lease(conn, [sub.id], uow.wall() + UPGRADE_LEASE)
    await record(
        conn,
        principal,
        "subscription.upgrade_requested",
        now,
        subject_type="subscription",
        subject_id=sub.id,
        customer_id=sub.customer_id,
        policy_version=policy.version,
        data={"change_id": change_id, "from_plan": sub.plan_code, "plan": target.code, "price": target.amount},
    )
    row = await payment_repo.get(conn, payment["id"])
    return change_id, row, customer.gateway_customer_id or ""


async def _release(uow: UnitOfWork, subscription_id: str) -> None:
    await subscription_repo.lease(uow.conn, [subscription_id], None)


async def _settle_upgrade_request(
    uow: UnitOfWork, principal: Principal, change_id: str, payment_id: str, result: ChargeResult
) -> Upgrade | None:
    """Step 3 of `upgrade`: the gateway's answer recorded (`charging.settle`, which hands an upgrade's charge to
    `settle_upgrade`); None for a decline (402 once this has committed: nothing changed)."""
    conn = uow.conn
    status = await charging.settle(conn, uow.ctx, payment_id, result, uow.now, principal)
    if status == PaymentStatus.FAILED:
        return None
    change = await repository.get(conn, change_id)
    sub = await subscription_repo.get(conn, change.subscription_id)
    if change.status == PlanChangeStatus.APPLIED:
        return Upgrade(sub, None, uow.now, None, change.forfeited_days, change.forfeited_value)
    # Waiting for the customer's action: what would be forfeited if it were paid now (information).
    days, value = _forfeited(sub, uow.now)
    return Upgrade(sub, change, uow.now, result.client_secret, days, value)


async def settle_upgrade(
    conn: AsyncConnection,
    ctx: AppContext,
    payment: Any,
    result: ChargeResult,
    now: _dt.datetime,
    actor: Principal,
    sub: Any,
) -> str:
    """C4/B1: the gateway's answer for an upgrade's charge (the request itself, the webhook, the cancellation job),
    with the subscription and the payment locked by `charging.lock_for_settlement`. Returns the payment's status.

    - Paid while the change still waits for it (pending, not expired, the subscription active): the subscription
      moves to the new plan at its locked price with a new period starting now, the new anchor (B4); a pending C3
      change and a scheduled cancellation are gone; the unused days of the old period are forfeited (R1, stated in
      the `plan_changed` notice, for information).
    - Paid when the change no longer waits for it (expired, withdrawn, failed, the subscription ended): it bought
      nothing, refunded in full at once (B1 correction).
    - Needing the customer's action: the change waits (the webhook completes it, or it expires).
    - Declined: nothing changes; the change failed."""
    change = await repository.of_payment(conn, payment.id)
    if result.status == "succeeded":
        if payment.status == PaymentStatus.SUCCEEDED:
            return PaymentStatus.SUCCEEDED  # a repeat
        waits = (
            payment.status == PaymentStatus.PENDING
            and change is not None
            and change.status == PlanChangeStatus.PENDING
            and change.expires_at is not None
            and now < change.expires_at
            and sub.status == SubscriptionStatus.ACTIVE
            and sub.customer_status == CustomerStatus.ACTIVE
        )
        if waits:
            await _apply_upgrade(conn, ctx, sub, payment, change, result.payment_id, now, actor)
        else:
            await _upgrade_bought_nothing(conn, ctx, sub, payment, change, result.payment_id, now, actor)
        return PaymentStatus.SUCCEEDED
    if payment.status != PaymentStatus.PENDING:
        return payment.status  # settled already: forward only
    if result.status == "requires_action" and change is not None and change.status == PlanChangeStatus.PENDING:
        await payment_repo.await_customer(conn, payment.id, result.payment_id, result.client_secret, now)
        await subscription_repo.lease(conn, [sub.id], None)
        return PaymentStatus.PENDING
    code = result.decline_code or ("authentication_required" if result.status == "requires_action" else "failed")
    await _fail_upgrade(conn, ctx, sub, payment, change, result.payment_id or None, code, now, actor)
    return PaymentStatus.FAILED


async def _fail_upgrade(conn, ctx, sub, payment, change, gateway_payment_id, code: str, now, actor) -> None:  # noqa: ANN001
    """C4/B1: the upgrade's payment failed (declined, expired, withdrawn): nothing changes; a PaymentIntent that
    could still be completed is cancelled at the gateway (`app.payments.corrections`)."""
    intent = gateway_payment_id or payment.gateway_payment_id
    await payment_repo.mark_failed(
        conn,
        payment.id,
        code=code,
        gateway_payment_id=intent,
        now=now,
        cancel_due_at=ctx.system_clock.wall() if intent else None,
    )
    await subscription_repo.lease(conn, [sub.id], None)
    if change is not None:
        status = PlanChangeStatus.EXPIRED if code == "expired" else PlanChangeStatus.FAILED
        if code == "withdrawn":
            status = PlanChangeStatus.WITHDRAWN
        await repository.decide(conn, [change.id], status, now)
    await record(
        conn,
        actor,
        "subscription.upgrade_failed",
        now,
        subject_type="subscription",
        subject_id=sub.id,
        customer_id=sub.customer_id,
        policy_version=payment.policy_version,
        data={"payment_id": payment.id, "change_id": change.id if change else None, "failure_code": code},
        events=[
            (
                "payment.failed",
                payment_to_api(
                    changed(
                        payment,
                        status=PaymentStatus.FAILED,
                        failure_code=code,
                        gateway_payment_id=intent,
                        updated_at=now,
                    )
                ),
            )
        ],
    )


async def _upgrade_bought_nothing(conn, ctx, sub, payment, change, gateway_payment_id: str, now, actor) -> None:  # noqa: ANN001
    """B1: a payment that succeeded for an upgrade no longer waiting for it bought nothing: recorded, and refunded
    in full at once (a correction, sent once this commits)."""
    await payment_repo.mark_succeeded_without_effect(conn, payment.id, gateway_payment_id, now)
    if change is not None and change.status == PlanChangeStatus.PENDING:
        await repository.decide(conn, [change.id], PlanChangeStatus.EXPIRED, now)
    outcome = late_success(
        PaymentPurpose.PURCHASE, SubscriptionStatus.CANCELED, False, payment.amount, payment.refunded_amount
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
        data={"subscription_status": sub.status, "purpose": payment.purpose, "correction": outcome.action},
        events=[
            (
                "payment.succeeded",
                payment_to_api(
                    changed(
                        payment, status=PaymentStatus.SUCCEEDED, gateway_payment_id=gateway_payment_id, updated_at=now
                    )
                ),
            )
        ],
    )
    if outcome.action == "refund":
        await book_correction(conn, ctx, sub, payment, outcome, now)


async def _apply_upgrade(conn, ctx, sub, payment, change, gateway_payment_id: str, now, actor) -> None:  # noqa: ANN001
    """C4/B4/R1: the upgrade paid: the new plan at its locked price from now, the new anchor; the rest of the old
    period forfeited (neither refunded nor credited)."""
    days, value = _forfeited(sub, now)
    start, end = period_bounds(now, change.interval, 0)
    index = sub.period_index + 1
    values = {
        "plan_id": change.plan_id,
        "plan_code": change.plan_code,
        "interval": change.interval,
        "price_amount": change.price_amount,
        "tax_amount": payment.tax_amount,
        "anchor_at": now,
        "anchor_index": index,
        "period_index": index,
        "current_period_start": start,
        "current_period_end": end,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "failed_attempts": 0,
        "next_retry_at": None,
        "claimed_until": None,
    }
    await subscription_repo.change_plan_now(conn, sub.id, values)
    await payment_repo.mark_succeeded(
        conn, payment_repo.succeeded_params(payment.id, gateway_payment_id, start, end, now)
    )
    if payment.credit_applied:  # R2: the credit is spent only by a charge that succeeded
        await payment_repo.spend_credit(conn, [charging.credit_spend(payment, now)])
    await repository.decide(conn, [change.id], PlanChangeStatus.APPLIED, now)
    await repository.record_forfeit(conn, change.id, days, value)
    c3 = await repository.pending(conn, sub.id, PERIOD_END)
    if c3 is not None:  # C4: any other change is gone
        await repository.decide(conn, [c3.id], PlanChangeStatus.WITHDRAWN, now)
    name = (await plan_repo.names(conn, [change.plan_id]))[change.plan_id]
    subject = f"Your subscription is now on {name}"
    body = (
        f"Your upgrade to {name} is paid: a new period runs from {_date(start)} to {_date(end)}, renewing at "
        f"{money(change.price_amount, change.currency)} per {change.interval}. The {days} whole day"
        f"{'s' if days != 1 else ''} left of your previous period (worth {money(value, sub.currency)}) are "
        "forfeited: as our terms say, nothing is refunded or credited."
    )
    await create_notices(
        conn,
        [
            NewNotice(sub.customer_id, "plan_changed", f"plan_changed:{change.id}", subject, body),
            NewNotice(
                sub.customer_id,
                "receipt",
                f"receipt:{payment.id}",
                *templates.receipt(
                    name,
                    payment.price_amount,
                    payment.tax_amount,
                    payment.credit_applied,
                    payment.amount,
                    payment.currency,
                    start,
                    end,
                ),
            ),
        ],
        now,
        ctx.system_clock.wall(),
    )
    after = changed(sub, **values)
    await record(
        conn,
        actor,
        "subscription.plan_changed",
        now,
        subject_type="subscription",
        subject_id=sub.id,
        customer_id=sub.customer_id,
        policy_version=change.policy_version,
        data={
            "change_id": change.id,
            "when": "now",
            "from_plan": sub.plan_code,
            "plan": change.plan_code,
            "price": change.price_amount,
            "payment_id": payment.id,
            "forfeited_days": days,
            "forfeited_value": value,
            "refunded": 0,  # R1
        },
        events=[
            ("subscription.plan_changed", event_object(after, None, now)),
            (
                "payment.succeeded",
                payment_to_api(
                    changed(
                        payment,
                        status=PaymentStatus.SUCCEEDED,
                        gateway_payment_id=gateway_payment_id,
                        period_start=start,
                        period_end=end,
                        client_secret=None,
                        updated_at=now,
                    )
                ),
            ),
        ],
    )


async def abandon_upgrade(uow: UnitOfWork, actor: Principal, sub, code: str) -> bool:  # noqa: ANN001
    """C4/B1: an upgrade waiting for the customer's action is given up (withdrawn, or a cancellation asked): its
    payment fails and its PaymentIntent is cancelled at the gateway once this commits. True if there was one."""
    conn = uow.conn
    change = await repository.pending(conn, sub.id, NOW)
    if change is None or change.payment_id is None:
        return False
    payment = await payment_repo.lock(conn, change.payment_id)
    if payment.status != PaymentStatus.PENDING:
        await repository.decide(conn, [change.id], PlanChangeStatus.WITHDRAWN, uow.now)
        return True
    await _fail_upgrade(conn, uow.ctx, sub, payment, change, None, code, uow.now, actor)
    uow.after_commit(cancel_at_gateway, uow.ctx, payment_ids=[payment.id])
    return True


async def expire_waiting_upgrades(ctx: AppContext, now: _dt.datetime) -> int:
    """Scheduled (C4/B1): an upgrade still waiting for the customer's action at its expiry (23 h, or the period end
    if sooner) expires: its payment fails, its PaymentIntent is cancelled at the gateway, the old plan renews as if
    nothing had been asked."""
    async with unit_of_work(ctx, now=now) as uow:
        conn = uow.conn
        # Read without a lock; each is then locked as every settlement locks (subscription, payment, change).
        due = await repository.waiting_upgrades_due(conn, now, limit=ctx.settings.job_batch_size)
        expired = []
        for item in due:
            found = await charging.lock_for_settlement(conn, by="id", value=item.payment_id)
            if found is None:
                continue
            sub, payment = found
            change = await repository.of_payment(conn, payment.id)
            if change is None or change.status != PlanChangeStatus.PENDING:
                continue
            if payment.status == PaymentStatus.PENDING:
                await _fail_upgrade(conn, ctx, sub, payment, change, None, "expired", now, SYSTEM)
                expired.append(payment.id)
            else:
                await repository.decide(conn, [change.id], PlanChangeStatus.EXPIRED, now)
    if expired:
        await cancel_at_gateway(ctx, payment_ids=expired)
    return len(due)
