"""What the frontend asks before showing paid features: does a trial or a subscription give access now?"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.access import queries
from app.access.queries import SubscriptionAccess, TrialAccess
from app.audit.service import Event
from app.auth import Principal
from app.context import AppContext
from app.customers import repository as customer_repo
from app.plan_changes import repository as plan_change_repo
from app.plan_changes.schemas import in_force
from app.subscriptions.schemas import subscription_facts
from policies import (
    AccessDecision,
    AccessFacts,
    SubscriptionStatus,
    access,
    past_due_grace_days,
    retries_counted_from,
)


async def customer_access(ctx: AppContext, principal: Principal, customer_id: str) -> AccessDecision:
    """R3/C1/B2/B5/T3: decided by `policies.access` from the customer's status and live trial and subscription."""
    async with ctx.db.read() as conn:
        customer = await customer_repo.get_visible(conn, principal, customer_id)
        return await access_in(conn, ctx, customer.id, customer.status)


async def access_in(
    conn: AsyncConnection, ctx: AppContext, customer_id: str, customer_status: str, now: _dt.datetime | None = None
) -> AccessDecision:
    """`customer_access` on `conn` (a transaction sees its own changes), for a customer of `customer_status`."""
    trial = await queries.running_trial(conn, customer_id)
    sub = await queries.subscription_giving_access(conn, customer_id)
    if now is None:
        now = await ctx.clock.now(conn)
    if (
        sub is not None and sub.has_pending_change
    ):  # C3 (issue 16): a plan change due at the period end is in force from then (B2)
        sub, _ = in_force(sub, await plan_change_repo.pending(conn, sub.id), now)
    return access(facts_of(ctx, customer_status, trial, sub, now), now)


def facts_of(
    ctx: AppContext,
    customer_status: str,
    trial: TrialAccess | None,
    sub: SubscriptionAccess | None,
    now: _dt.datetime,
) -> AccessFacts:
    """What `policies.access` decides from: the customer's status, their running trial and the subscription that
    can give access (rows with the columns `app/access/queries.py` reads, or None). B5/R3: a past_due one keeps
    access until its last retry date (`policies.past_due_grace_days`), counted from the period end or from the
    lifting of a suspension that held the charge (`policies.retries_counted_from`)."""
    past_due = sub is not None and sub.status == SubscriptionStatus.PAST_DUE
    period_end = sub.current_period_end if sub is not None else None
    if sub is not None and past_due and period_end is not None:
        period_end = retries_counted_from(period_end, sub.charge_released_at)
    return AccessFacts(
        customer_status=customer_status,
        trial_status=trial.status if trial else None,
        trial_ends_at=trial.ends_at if trial else None,
        trial_plan=trial.plan_code if trial else None,
        subscription_status=sub.status if sub else None,
        subscription_period_end=period_end,
        subscription_plan=sub.plan_code if sub else None,
        subscription=(subscription_facts(sub) if sub is not None and sub.status == SubscriptionStatus.ACTIVE else None),
        past_due_grace_days=past_due_grace_days(ctx.policies.at(now)) if past_due else 0,
    )


def access_document(decision: AccessDecision) -> dict[str, Any]:
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
