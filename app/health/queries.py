"""Read-side queries of the health and metrics endpoints: the backlog figures (`backlog`) and the readiness probe.
Each figure is one indexed aggregate, read on the autocommit lane."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, Table, and_, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import customers, notices, payments, refunds, subscriptions, trials
from policies.states import (
    CustomerStatus,
    NoticeStatus,
    PaymentPurpose,
    PaymentStatus,
    RefundSource,
    RefundStatus,
    SubscriptionStatus,
    TrialStatus,
)

_PING = text("SELECT 1")


@dataclass(frozen=True)
class Due:
    count: int
    oldest: _dt.datetime | None


@dataclass(frozen=True)
class BacklogFigures:
    due: dict[str, Due]  # by job (app.health.backlog.JOBS)
    stuck: int  # renewal and retry charges pending past their worker's lease
    retries: dict[str, int]  # B5 retry charges decided in the last 24 hours, by outcome


async def ping(conn: AsyncConnection) -> None:
    """One round trip: the database answers."""
    await conn.execute(_PING)


def _due(table: Table, due_at: ColumnElement[_dt.datetime], *conditions: ColumnElement[bool]) -> Select:
    return select(func.count(), func.min(due_at)).select_from(table).where(*conditions)


def _held_by_suspension() -> ColumnElement[bool]:
    """R3: a suspended (or terminated) customer's renewals and retries wait; they are not late."""
    return subscriptions.c.customer_id.in_(select(customers.c.id).where(customers.c.status != CustomerStatus.ACTIVE))


async def backlog(
    conn: AsyncConnection, now: _dt.datetime, wall: _dt.datetime, stuck_after: _dt.timedelta
) -> BacklogFigures:
    """What waits, at business time `now` and real time `wall` (deliveries and cancellations are real time)."""
    queries = {
        "renewals": _due(
            subscriptions,
            subscriptions.c.current_period_end,
            subscriptions.c.status == SubscriptionStatus.ACTIVE,
            subscriptions.c.current_period_end <= now,
            ~_held_by_suspension(),
        ),
        "retries": _due(
            subscriptions,
            subscriptions.c.next_retry_at,
            subscriptions.c.status == SubscriptionStatus.PAST_DUE,
            subscriptions.c.next_retry_at <= now,
            ~_held_by_suspension(),
        ),
        "trial_notices": _due(
            trials,
            trials.c.notice_at,
            trials.c.status == TrialStatus.ACTIVE,
            trials.c.notice_sent_at.is_(None),
            trials.c.notice_at <= now,
        ),
        "trial_expiries": _due(
            trials, trials.c.ends_at, trials.c.status == TrialStatus.ACTIVE, trials.c.ends_at <= now
        ),
        "notice_deliveries": _due(
            notices,
            notices.c.next_attempt_at,
            notices.c.status == NoticeStatus.PENDING,
            notices.c.next_attempt_at <= wall,
        ),
        "refund_retries": _due(
            refunds,
            refunds.c.created_at,
            refunds.c.status == RefundStatus.PENDING,
            refunds.c.created_at <= now - stuck_after,
        ),
        # B1: every cancellation not yet confirmed, leased or due (its mark is real time, moved on by each try).
        "payment_cancellations": _due(
            payments, payments.c.gateway_cancel_due_at, payments.c.gateway_cancel_due_at.is_not(None)
        ),
    }
    due = {}
    for job, query in queries.items():
        count, oldest = (await conn.execute(query)).one()
        due[job] = Due(count, oldest)
    stuck = (
        await conn.execute(
            select(func.count())
            .select_from(payments.join(subscriptions, payments.c.subscription_id == subscriptions.c.id))
            .where(
                payments.c.status == PaymentStatus.PENDING,
                payments.c.purpose.in_((PaymentPurpose.RENEWAL, PaymentPurpose.RETRY)),
                or_(subscriptions.c.claimed_until.is_(None), subscriptions.c.claimed_until <= wall - stuck_after),
                payments.c.created_at <= now - stuck_after,
            )
        )
    ).scalar_one()
    retries = {
        status: count
        for status, count in (
            await conn.execute(
                select(payments.c.status, func.count())
                .where(
                    and_(
                        payments.c.purpose == PaymentPurpose.RETRY,
                        payments.c.status.in_((PaymentStatus.SUCCEEDED, PaymentStatus.FAILED)),
                        payments.c.updated_at > now - _dt.timedelta(hours=24),
                    )
                )
                .group_by(payments.c.status)
            )
        ).all()
    }
    return BacklogFigures(due, stuck, retries)


async def corrections_failed(conn: AsyncConnection) -> int:
    """B1/R2: failed correction refunds of payments not refunded in full since (by a re-issued refund)."""
    count: int = (
        await conn.execute(
            select(func.count(func.distinct(refunds.c.payment_id)))
            .select_from(refunds.join(payments, payments.c.id == refunds.c.payment_id))
            .where(
                refunds.c.source == RefundSource.CORRECTION,
                refunds.c.status == RefundStatus.FAILED,
                payments.c.refunded_amount < payments.c.amount,
            )
        )
    ).scalar_one()
    return count
