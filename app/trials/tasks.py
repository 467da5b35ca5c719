"""Scheduled trial work (T3, T4), in claimed batches: one query finds a batch of due trials (locked with
SKIP LOCKED on PostgreSQL so replicas split the work), and the batch is written with a handful of statements,
not a round trip per trial."""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import exists, select, update

from app.access.service import access_changed
from app.audit.service import SYSTEM, audit_row, changed, record_many
from app.models import customers, plans, subscriptions, trials
from app.notices import templates
from app.notices.service import NewNotice, create_notices
from app.trials.schemas import to_api
from app.uow import unit_of_work
from policies import AccessFacts, trial_expired, trial_notice_days_left

# T3/T6: a customer who bought while the trial ran past its end keeps the subscription's access when it expires.
_HAS_LIVE_SUBSCRIPTION = (
    exists()
    .where(subscriptions.c.customer_id == trials.c.customer_id, subscriptions.c.status.in_(("active", "past_due")))
    .label("has_live_subscription")
)


def _expired_events(trial, now: _dt.datetime) -> list:  # noqa: ANN001
    """The trial, expired at its own end; the access it took away, unless something else decides it (the
    customer's standing, or a subscription)."""
    events = [("trial.expired", to_api(changed(trial, status="expired", ended_at=trial.ends_at)))]
    if trial.customer_status == "active" and not trial.has_live_subscription:
        events.append(access_changed(AccessFacts(customer_status="active"), now))
    return events


def _claim(stmt, ctx):  # noqa: ANN001, ANN202
    stmt = stmt.limit(ctx.settings.job_batch_size)
    return stmt.with_for_update(of=trials, skip_locked=True) if ctx.db.is_postgres else stmt


async def send_trial_expiring_notices(ctx, now: _dt.datetime) -> int:  # noqa: ANN001
    """T4: one `trial_expiring` notice per trial when its notice time has come; exactly once, because the
    notice's dedupe key is unique and the trial is marked in the same transaction. A trial that has already
    ended gets none (its `trial_expired` notice says it all); a late one states the real days left."""
    async with unit_of_work(ctx, now=now) as uow:
        conn = uow.conn
        due = (
            await conn.execute(
                _claim(
                    select(trials, plans.c.name.label("plan_name"))
                    .join(plans, plans.c.id == trials.c.plan_id)
                    .where(
                        trials.c.status == "active",
                        trials.c.notice_sent_at.is_(None),
                        trials.c.notice_at <= now,
                        trials.c.ends_at > now,
                    )
                    .order_by(trials.c.notice_at),
                    ctx,
                )
            )
        ).all()
        days_left = {t.id: trial_notice_days_left(t.notice_at, t.ends_at, now, already_sent=False) for t in due}
        due = [t for t in due if days_left[t.id] is not None]
        if not due:
            return 0
        items = []
        for t in due:
            subject, body = templates.trial_expiring(t.plan_name, t.ends_at, days_left[t.id])
            items.append(NewNotice(t.customer_id, "trial_expiring", f"trial_expiring:{t.id}", subject, body))
        await create_notices(conn, items, now, ctx.system_clock.wall())
        await conn.execute(update(trials).where(trials.c.id.in_([t.id for t in due])).values(notice_sent_at=now))
        await record_many(
            conn,
            [
                audit_row(
                    SYSTEM,
                    "trial.notice_queued",
                    now,
                    subject_type="trial",
                    subject_id=t.id,
                    customer_id=t.customer_id,
                    policy_version=t.policy_version,
                    events=[("trial.expiring", to_api(t))],
                )
                for t in due
            ],
        )
    return len(due)


async def expire_trials(ctx, now: _dt.datetime) -> int:  # noqa: ANN001
    """T3: at its end a trial expires. Nothing is charged and no subscription appears; the person gets a
    `trial_expired` notice prompting them to buy, with the plan and its current price."""
    async with unit_of_work(ctx, now=now) as uow:
        conn = uow.conn
        due = (
            await conn.execute(
                _claim(
                    select(
                        trials,
                        plans.c.name.label("plan_name"),
                        plans.c.amount,
                        plans.c.currency,
                        plans.c.interval,
                        customers.c.status.label("customer_status"),
                        _HAS_LIVE_SUBSCRIPTION,
                    )
                    .join(plans, plans.c.id == trials.c.plan_id)
                    .join(customers, customers.c.id == trials.c.customer_id)
                    .where(trials.c.status == "active", trials.c.ends_at <= now)
                    .order_by(trials.c.ends_at),
                    ctx,
                )
            )
        ).all()
        due = [t for t in due if trial_expired(t.ends_at, now)]
        if not due:
            return 0
        items = []
        for t in due:
            subject, body = templates.trial_expired(t.plan_name, t.amount, t.currency, t.interval)
            items.append(NewNotice(t.customer_id, "trial_expired", f"trial_expired:{t.id}", subject, body))
        await create_notices(conn, items, now, ctx.system_clock.wall())
        # Each trial ends at its own end time, not at the moment the sweep ran.
        await conn.execute(
            update(trials)
            .where(trials.c.id.in_([t.id for t in due]), trials.c.status == "active")
            .values(status="expired", ended_at=trials.c.ends_at)
        )
        await record_many(
            conn,
            [
                audit_row(
                    SYSTEM,
                    "trial.expired",
                    now,
                    subject_type="trial",
                    subject_id=t.id,
                    customer_id=t.customer_id,
                    policy_version=t.policy_version,
                    events=_expired_events(t, now),
                )
                for t in due
            ],
        )
    return len(due)
