"""The reads that decide a customer's access (R3/C1/B2/B5/T3): the running trial and the subscription that can
give access. Built once (SQLAlchemy reuses their compiled form: the access check is a hot path), run on the
caller's connection, so a transaction sees its own changes."""

from __future__ import annotations

import datetime as _dt
from typing import Protocol, cast

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import subscriptions, trials
from app.subscriptions.repository import HAS_PENDING_CHANGE
from app.subscriptions.schemas import PERIOD_COLUMNS
from policies import SUBSCRIPTION_GIVING_ACCESS, TrialStatus


class TrialAccess(Protocol):
    """What a running trial contributes to access."""

    status: str
    ends_at: _dt.datetime
    plan_code: str


class SubscriptionAccess(Protocol):
    """What a subscription contributes to access: its state, plan and what places its periods (PERIOD_COLUMNS,
    for `policies.subscription_at`). A full `subscriptions` row has all of it."""

    id: str
    status: str
    current_period_end: _dt.datetime | None
    plan_code: str
    charge_released_at: _dt.datetime | None
    anchor_at: _dt.datetime | None
    interval: str
    period_index: int
    anchor_index: int
    current_period_start: _dt.datetime | None
    cancel_at_period_end: bool
    canceled_at: _dt.datetime | None
    ended_at: _dt.datetime | None
    ended_reason: str | None


class SubscriptionGivingAccess(SubscriptionAccess, Protocol):
    has_pending_change: bool  # C3: only then is the change read (`plan_changes.repository.pending`)


_RUNNING_TRIAL = (
    select(trials.c.status, trials.c.ends_at, trials.c.plan_code)
    .where(trials.c.customer_id == bindparam("customer_id"), trials.c.status == TrialStatus.ACTIVE)
    .order_by(trials.c.id.desc())
    .limit(1)
)

_SUBSCRIPTION_GIVING_ACCESS = select(
    subscriptions.c.status,
    subscriptions.c.current_period_end,
    subscriptions.c.plan_code,
    subscriptions.c.charge_released_at,
    subscriptions.c.id,  # C3: its pending plan change
    *PERIOD_COLUMNS,
    HAS_PENDING_CHANGE,
).where(
    subscriptions.c.customer_id == bindparam("customer_id"),
    subscriptions.c.status.in_(sorted(SUBSCRIPTION_GIVING_ACCESS)),
)


async def running_trial(conn: AsyncConnection, customer_id: str) -> TrialAccess | None:
    """T1/T3: the customer's newest running trial, if any."""
    row = (await conn.execute(_RUNNING_TRIAL, {"customer_id": customer_id})).first()
    return cast(TrialAccess | None, row)


async def subscription_giving_access(conn: AsyncConnection, customer_id: str) -> SubscriptionGivingAccess | None:
    """B5/C1: the customer's active or past_due subscription, if any (a customer has at most one live one)."""
    row = (await conn.execute(_SUBSCRIPTION_GIVING_ACCESS, {"customer_id": customer_id})).first()
    return cast(SubscriptionGivingAccess | None, row)
