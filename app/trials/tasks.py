"""Scheduled trial work (T3, T4), in claimed batches: one query finds a batch of due trials (app/claims.py: locked
with SKIP LOCKED on PostgreSQL so replicas split the work), and the batch is written with a handful of statements,
not a round trip per trial."""

from __future__ import annotations

import datetime as _dt

from app.access.service import access_changed
from app.audit.service import SYSTEM, Event, audit_row, changed, record_many
from app.context import AppContext
from app.notices import templates
from app.notices.service import NewNotice, create_notices
from app.trials import repository
from app.trials.repository import ExpiringTrial
from app.trials.schemas import to_api
from app.uow import unit_of_work
from policies import AccessFacts, CustomerStatus, TrialStatus, trial_expired, trial_notice_days_left


def _expired_events(trial: ExpiringTrial, now: _dt.datetime) -> list[Event]:
    """The trial, expired at its own end; the access it took away, unless something else decides it (the
    customer's standing, or a subscription)."""
    events = [("trial.expired", to_api(changed(trial, status=TrialStatus.EXPIRED, ended_at=trial.ends_at)))]
    if trial.customer_status == CustomerStatus.ACTIVE and not trial.subscription_gives_access:
        events.append(access_changed(AccessFacts(customer_status=CustomerStatus.ACTIVE), now))
    return events


async def send_trial_expiring_notices(ctx: AppContext, now: _dt.datetime) -> int:
    """T4: one `trial_expiring` notice per trial when its notice time has come; exactly once, because the
    notice's dedupe key is unique and the trial is marked in the same transaction. A trial that has already
    ended gets none (its `trial_expired` notice says it all); a late one states the real days left."""
    async with unit_of_work(ctx, now=now) as uow:
        conn = uow.conn
        claimed = await repository.claim_notice_due(conn, now, ctx.settings.job_batch_size)
        due = [
            (t, days_left)
            for t in claimed
            if (days_left := trial_notice_days_left(t.notice_at, t.ends_at, now, already_sent=False)) is not None
        ]
        if not due:
            return 0
        items = []
        for t, days_left in due:
            subject, body = templates.trial_expiring(t.plan_name, t.ends_at, days_left)
            items.append(NewNotice(t.customer_id, "trial_expiring", f"trial_expiring:{t.id}", subject, body))
        await create_notices(conn, items, now, ctx.system_clock.wall())
        await repository.mark_notice_sent(conn, [t.id for t, _ in due], now)
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
                for t, _ in due
            ],
        )
    return len(due)


async def expire_trials(ctx: AppContext, now: _dt.datetime) -> int:
    """T3: at its end a trial expires. Nothing is charged and no subscription appears; the person gets a
    `trial_expired` notice prompting them to buy, with the plan and its current price."""
    async with unit_of_work(ctx, now=now) as uow:
        conn = uow.conn
        claimed = await repository.claim_expiry_due(conn, now, ctx.settings.job_batch_size)
        due = [t for t in claimed if trial_expired(t.ends_at, now)]
        if not due:
            return 0
        items = []
        for t in due:
            subject, body = templates.trial_expired(t.plan_name, t.amount, t.currency, t.interval)
            items.append(NewNotice(t.customer_id, "trial_expired", f"trial_expired:{t.id}", subject, body))
        await create_notices(conn, items, now, ctx.system_clock.wall())
        await repository.expire(conn, [t.id for t in due])  # each at its own end time
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
