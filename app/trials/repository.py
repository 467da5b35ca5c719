"""Every statement about trials and the trial-once marks (T1..T5): the services and jobs ask, this module asks
the database. Rows come back typed by the protocols below (no conversion: a `Row` has these attributes)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any, Protocol, cast

from sqlalchemy import Select, bindparam, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import Principal
from app.claims import claim_batch
from app.customers.repository import get_owned
from app.db import insert_ignoring_conflict
from app.models import customers, plans, subscriptions, trial_exclusions, trials
from policies import SUBSCRIPTION_GIVING_ACCESS, TrialStatus


class TrialRow(Protocol):
    """A row of `trials`."""

    id: str
    customer_id: str
    plan_id: str
    plan_code: str
    status: str
    started_at: _dt.datetime
    ends_at: _dt.datetime
    notice_at: _dt.datetime
    notice_sent_at: _dt.datetime | None
    ended_at: _dt.datetime | None
    policy_version: str


class NoticeDueTrial(TrialRow, Protocol):
    """A running trial whose `trial_expiring` notice is due, with its plan's name."""

    plan_name: str


class ExpiringTrial(TrialRow, Protocol):
    """A running trial at its end, with what its `trial_expired` notice and events say."""

    plan_name: str
    amount: int
    currency: str
    interval: str
    customer_status: str
    subscription_gives_access: bool  # T3/T6: the customer bought meanwhile, and that subscription decides access


def _postgres(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


async def get_visible(conn: AsyncConnection, principal: Principal, trial_id: str) -> TrialRow:
    return cast(TrialRow, await get_owned(conn, principal, trials, trial_id, "trial"))


def for_customer(customer_id: str) -> Select[Any]:
    """The customer's trials, for a page of `GET /v1/customers/{id}/trials` (ordered by `PAGE_KEY`)."""
    return select(trials).where(trials.c.customer_id == customer_id)


PAGE_KEY = trials.c.id  # what a page of trials is ordered and cut by (app/pagination.py)


async def insert_trial(conn: AsyncConnection, trial: dict[str, Any]) -> None:
    await conn.execute(insert(trials).values(trial))


async def mark_notice_sent(conn: AsyncConnection, trial_ids: Sequence[str], now: _dt.datetime) -> None:
    """T4: the trials' `trial_expiring` notices are queued (in this transaction)."""
    await conn.execute(update(trials).where(trials.c.id.in_(trial_ids)).values(notice_sent_at=now))


async def end_running(conn: AsyncConnection, customer_id: str, status: TrialStatus, now: _dt.datetime) -> None:
    """R3/D3: the customer's running trial ends now, with `status`."""
    await conn.execute(
        update(trials)
        .where(trials.c.customer_id == customer_id, trials.c.status == TrialStatus.ACTIVE)
        .values(status=status, ended_at=now)
    )


_NOTICE_DUE = (
    select(trials, plans.c.name.label("plan_name"))
    .join(plans, plans.c.id == trials.c.plan_id)
    .where(
        trials.c.status == TrialStatus.ACTIVE,
        trials.c.notice_sent_at.is_(None),
        trials.c.notice_at <= bindparam("now"),
        trials.c.ends_at > bindparam("now"),
    )
    .order_by(trials.c.notice_at)
)


async def claim_notice_due(conn: AsyncConnection, now: _dt.datetime, limit: int) -> list[NoticeDueTrial]:
    """T4: a batch of running trials whose notice time has come, taken by this transaction."""
    stmt = _NOTICE_DUE.params(now=now)
    rows = await claim_batch(conn, stmt, of=trials, limit=limit, postgres=_postgres(conn))
    return cast(list[NoticeDueTrial], list(rows))


# T3/T6: a customer who bought while the trial ran past its end keeps the subscription's access when it expires.
_SUBSCRIPTION_GIVES_ACCESS = (
    exists()
    .where(
        subscriptions.c.customer_id == trials.c.customer_id,
        subscriptions.c.status.in_(sorted(SUBSCRIPTION_GIVING_ACCESS)),
    )
    .label("subscription_gives_access")
)

_EXPIRY_DUE = (
    select(
        trials,
        plans.c.name.label("plan_name"),
        plans.c.amount,
        plans.c.currency,
        plans.c.interval,
        customers.c.status.label("customer_status"),
        _SUBSCRIPTION_GIVES_ACCESS,
    )
    .join(plans, plans.c.id == trials.c.plan_id)
    .join(customers, customers.c.id == trials.c.customer_id)
    .where(trials.c.status == TrialStatus.ACTIVE, trials.c.ends_at <= bindparam("now"))
    .order_by(trials.c.ends_at)
)


async def claim_expiry_due(conn: AsyncConnection, now: _dt.datetime, limit: int) -> list[ExpiringTrial]:
    """T3: a batch of running trials at or past their end, taken by this transaction."""
    stmt = _EXPIRY_DUE.params(now=now)
    rows = await claim_batch(conn, stmt, of=trials, limit=limit, postgres=_postgres(conn))
    return cast(list[ExpiringTrial], list(rows))


async def expire(conn: AsyncConnection, trial_ids: Sequence[str]) -> None:
    """T3: the trials expire, each at its own end time (not at the moment the sweep ran)."""
    await conn.execute(
        update(trials)
        .where(trials.c.id.in_(trial_ids), trials.c.status == TrialStatus.ACTIVE)
        .values(status=TrialStatus.EXPIRED, ended_at=trials.c.ends_at)
    )


# --- T5: the trial-once marks of a person ---


async def mark_kinds(conn: AsyncConnection, identities: Sequence[str]) -> set[str]:
    """T5: the kinds of mark ("trial", "paid") any of the person's identities carries."""
    result = await conn.execute(select(trial_exclusions.c.kind).where(trial_exclusions.c.identity.in_(identities)))
    return set(result.scalars())


async def mark_kind(conn: AsyncConnection, identity: str) -> str | None:
    """T5: the kind of mark one identity carries, if any."""
    result = await conn.execute(select(trial_exclusions.c.kind).where(trial_exclusions.c.identity == identity))
    return cast(str | None, result.scalar())


async def add_marks(conn: AsyncConnection, identities: Sequence[str], kind: str, now: _dt.datetime) -> bool:
    """T5: mark every identity; False if any was marked already (nothing is overwritten)."""
    rows = [{"identity": i, "kind": kind, "created_at": now} for i in identities]
    inserted = await insert_ignoring_conflict(conn, trial_exclusions, rows, conflict_on=["identity"])
    return bool(inserted == len(rows))
