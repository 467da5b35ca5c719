"""What the frontend asks before showing paid features: does a trial or a subscription give access now?"""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.audit.service import Event
from app.auth import Principal
from app.context import AppContext
from app.customers import repository as customer_repo
from app.models import subscriptions, trials
from app.plan_changes import repository as plan_change_repo
from app.plan_changes.schemas import in_force
from app.subscriptions.schemas import PERIOD_COLUMNS as _PERIOD_COLUMNS
from app.subscriptions.schemas import subscription_facts
from policies import AccessDecision, AccessFacts, access, retries_counted_from


async def customer_access(ctx: AppContext, principal: Principal, customer_id: str) -> AccessDecision:
    """R3/C1/B2/B5/T3: decided by `policies.access` from the customer's status and live trial and subscription."""
    async with ctx.db.read() as conn:
        customer = await customer_repo.get_visible(conn, principal, customer_id)
        return await access_in(conn, ctx, customer.id, customer.status)


async def access_in(
    conn: AsyncConnection, ctx: AppContext, customer_id: str, customer_status: str, now: _dt.datetime | None = None
) -> AccessDecision:
    """`customer_access` on `conn` (a transaction sees its own changes), for a customer of `customer_status`."""
    trial = (
        await conn.execute(
            select(trials.c.status, trials.c.ends_at, trials.c.plan_code)
            .where(trials.c.customer_id == customer_id, trials.c.status == "active")
            .order_by(trials.c.id.desc())
            .limit(1)
        )
    ).first()
    sub = (
        await conn.execute(
            select(
                subscriptions.c.status,
                subscriptions.c.current_period_end,
                subscriptions.c.plan_code,
                subscriptions.c.charge_released_at,
                subscriptions.c.id,  # C3 (issue 16)
                *_PERIOD_COLUMNS,
            ).where(subscriptions.c.customer_id == customer_id, subscriptions.c.status.in_(("active", "past_due")))
        )
    ).first()
    if now is None:
        now = await ctx.clock.now(conn)
    if sub is not None:  # C3 (issue 16): a plan change due at the period end is in force from then (B2)
        sub, _ = in_force(sub, await plan_change_repo.pending(conn, sub.id), now)
    return access(facts_of(ctx, customer_status, trial, sub, now), now)


def facts_of(ctx: AppContext, customer_status: str, trial, sub, now: _dt.datetime) -> AccessFacts:  # noqa: ANN001
    """What `policies.access` decides from: the customer's status, their running trial and live subscription
    (rows with the columns `access_in` reads, or None)."""
    # B5: a past_due subscription keeps access while retries remain, i.e. until the last retry date, counted from
    # the period end or from the lifting of a suspension that held the charge (R3).
    past_due = sub is not None and sub.status == "past_due"
    schedule = ctx.policies.at(now).retry_schedule_days if past_due else ()
    return AccessFacts(
        customer_status=customer_status,
        trial_status=trial.status if trial else None,
        trial_ends_at=trial.ends_at if trial else None,
        trial_plan=trial.plan_code if trial else None,
        subscription_status=sub.status if sub else None,
        subscription_period_end=(
            retries_counted_from(sub.current_period_end, sub.charge_released_at)
            if past_due
            else sub.current_period_end
            if sub
            else None
        ),
        subscription_plan=sub.plan_code if sub else None,
        subscription=subscription_facts(sub) if sub is not None and sub.status == "active" else None,
        past_due_grace_days=schedule[-1] if schedule else 0,
    )


def access_document(decision: AccessDecision) -> dict:
    """The access document of `GET /v1/customers/{id}/access` (and of the `access.changed` event)."""
    return {
        "object": "access",
        "has_access": decision.has_access,
        "source": decision.source,
        "plan": decision.plan,
        "until": decision.until,
        "reason": decision.reason,
    }


def access_changed(facts: AccessFacts, now: _dt.datetime) -> Event:
    """The `access.changed` event of a change, the access decided by `policies.access` from what the change's
    transaction knows."""
    return ("access.changed", access_document(access(facts, now)))
