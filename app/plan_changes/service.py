"""Plan change use cases: a change at the period end (C3) and its withdrawal, and the hooks other use cases call:
a cancellation withdraws a pending change (C1/C3), and the renewal batch moves the subscriptions whose change is
due to the new plan before charging them (B2/B3/B4/C3), set-based."""

from __future__ import annotations

import datetime as _dt
import math

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.audit.service import SYSTEM, audit_row, changed, record, record_many
from app.auth import Principal
from app.errors import ChargeInProgress, DomainError, SubscriptionEnded
from app.ids import new_id
from app.models import customers, plans
from app.notices.service import NewNotice, create_notices
from app.notices.templates import money
from app.plan_changes import repository
from app.plan_changes.schemas import PlanChangeCreate, event_object
from app.subscriptions import repository as subscription_repo
from app.subscriptions.schemas import subscription_facts
from app.uow import UnitOfWork
from policies import PlanOffer, SubscriptionTerms, change_decision, subscription_at
from policies.states import PlanChangeStatus, SubscriptionStatus


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


def _refuse_while_charging(uow: UnitOfWork, sub) -> None:  # noqa: ANN001
    """As a cancellation (C1): while a charge for the subscription is in flight its outcome decides which period
    a change would follow, so the change waits (409 with Retry-After)."""
    wall = uow.wall()
    if sub.claimed_until is not None and sub.claimed_until > wall:
        wait = math.ceil((sub.claimed_until - wall).total_seconds())
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


async def _customer_status(conn: AsyncConnection, customer_id: str) -> str:
    return (await conn.execute(select(customers.c.status).where(customers.c.id == customer_id))).scalar_one()


async def change(uow: UnitOfWork, principal: Principal, subscription_id: str, body: PlanChangeCreate):  # noqa: ANN201
    """C3: move to another plan at the end of the current period, at the new plan's list price of today (locked,
    B3); a pending change is replaced and a scheduled cancellation withdrawn (C1). Refusals (409, nothing changed)
    as `policies.change_decision` decides them. Returns (subscription, its pending change, now)."""
    conn, ctx, now = uow.conn, uow.ctx, uow.now
    sub = await subscription_repo.get_visible(conn, principal, subscription_id, for_update=True)
    customer_status = await _customer_status(conn, sub.customer_id)
    # B2: from a period end the subscription is in its next period, whether or not its renewal was recorded.
    state = subscription_at(subscription_facts(sub), now)
    if state.status == SubscriptionStatus.CANCELED and sub.status != SubscriptionStatus.CANCELED:
        raise SubscriptionEnded(f"subscription {sub.id} ended at {state.ended_at}")
    target = (await conn.execute(select(plans).where(plans.c.code == body.plan))).first()
    offer = PlanOffer(
        plan=body.plan,
        price=target.amount if target is not None else 0,
        currency=target.currency if target is not None else sub.currency,
        interval=target.interval if target is not None else sub.interval,
        active=target is not None and target.active,
    )
    policy = ctx.policies.at(now)
    decision = change_decision(_terms(sub, now), customer_status, offer, body.when, now, policy)
    if not decision.allowed:
        raise ChangeRefused(decision.code or "error", decision.reason)
    if body.when == "now":  # C4 is not offered by this service yet (issue 16 item 4)
        raise ChangeRefused("not_an_upgrade", "Immediate plan changes are not offered yet.")
    pending = await repository.pending(conn, sub.id)
    _refuse_while_due(sub, pending, now)
    _refuse_while_charging(uow, sub)
    effective_at = state.period_end  # C3/B2: the end of the period it is in now (past the stored end: the next)
    assert effective_at is not None  # an active subscription has a period
    replaced = await repository.decide(conn, [pending.id] if pending else [], PlanChangeStatus.WITHDRAWN, now)
    withdrew_cancellation = bool(sub.cancel_at_period_end)
    if withdrew_cancellation:  # C3: a change withdraws the scheduled cancellation
        sub = (
            await conn.execute(
                subscription_repo.SET_CANCELLATION, {"subscription_id": sub.id, "flag": False, "at": None}
            )
        ).one()
    assert target is not None  # the decision refused an unknown plan
    row = {
        "id": new_id("pchg"),
        "subscription_id": sub.id,
        "customer_id": sub.customer_id,
        "kind": "period_end",
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


async def withdraw(uow: UnitOfWork, principal: Principal, subscription_id: str):  # noqa: ANN201
    """C3 (as C2): the pending change is withdrawn; the subscription renews on its plan as if none was asked.
    Without one, nothing changes. Returns (subscription, now)."""
    conn, ctx, now = uow.conn, uow.ctx, uow.now
    sub = await subscription_repo.get_visible(conn, principal, subscription_id, for_update=True)
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
        data={"change_id": pending.id, "plan": pending.plan_code},
        events=[("subscription.plan_change_withdrawn", event_object(sub, None, now))],
    )
    return sub, now


async def withdraw_for_cancellation(uow: UnitOfWork, principal: Principal, sub) -> str | None:  # noqa: ANN001
    """C1/C3: a cancellation withdraws the pending change (one not yet in effect); returns its id, if any."""
    conn, now = uow.conn, uow.now
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
    by_sub = {
        c.subscription_id: c
        for c in await repository.pending_period_end(conn, [s.id for s in due])
        if any(s.id == c.subscription_id and s.current_period_end == c.effective_at for s in due)
    }
    if not by_sub:
        return due
    names = {
        p.id: p.name
        for p in (
            await conn.execute(
                select(plans.c.id, plans.c.name).where(plans.c.id.in_({c.plan_id for c in by_sub.values()}))
            )
        ).all()
    }
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
