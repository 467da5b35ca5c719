"""Backlog metrics: what the database says is waiting, for the alerts in deploy/prometheus/alerts.yml.

Each figure is read from the database, not counted in a process, so that every replica reports the same truth
whichever process runs the scheduler (`billing serve`, or a separate `billing scheduler` with no /metrics), and a
scheduler that stopped shows as work that waits rather than as a counter that stands still. The queries run when
/metrics is scraped, at most once per `BILLING_BACKLOG_REFRESH_SECONDS` (15 s) per process; each is one indexed
aggregate.

- `billing_due_work{job}` and `billing_due_work_oldest_seconds{job}`: items due and not yet done, and how long the
  oldest has waited. Renewals and retries of suspended customers are held (R3) and not counted.
- `billing_due_work{job="payment_cancellations"}`: B1 cancellations at the gateway not yet confirmed (a refused
  one is given up after `app.payments.corrections.MAX_REFUSALS` tries, audited as `payment.cancel_failed`).
- `billing_charges_stuck`: renewal and retry charges still pending whose worker's lease ran out more than
  STUCK_AFTER ago (a crashed worker whose charge no run has taken over).
- `billing_dunning_retries_last_24h{outcome}`: B5 retry charges decided in the last 24 hours, by outcome.
- `billing_corrections_failed`: B1 correction refunds the gateway refused (source correction, status failed) whose
  payment is still not refunded in full: money owed to a customer that no job retries (the correction's id is
  fixed). Ops re-issue it (docs/operations.md); the refund that does takes it off the count.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import and_, func, or_, select

from app.context import AppContext
from app.models import customers, notices, payments, refunds, subscriptions, trials

STUCK_AFTER = _dt.timedelta(minutes=5)
JOBS = ("renewals", "retries", "trial_notices", "trial_expiries", "notice_deliveries", "refund_retries")
JOBS += ("payment_cancellations",)  # B1: PaymentIntents still to be cancelled at the gateway (real time)


@dataclass(frozen=True)
class Due:
    count: int
    oldest: _dt.datetime | None


def _due(table, due_at, *conditions):  # noqa: ANN001, ANN202
    return select(func.count(), func.min(due_at)).select_from(table).where(*conditions)


def _held_by_suspension():  # noqa: ANN202
    """R3: a suspended (or terminated) customer's renewals and retries wait; they are not late."""
    return subscriptions.c.customer_id.in_(select(customers.c.id).where(customers.c.status != "active"))


async def _read(ctx: AppContext) -> tuple[dict[str, Due], int, dict[str, int], _dt.datetime, _dt.datetime]:
    wall = ctx.system_clock.wall()
    async with ctx.db.read() as conn:
        now = await ctx.clock.now(conn)
        queries = {
            "renewals": _due(
                subscriptions,
                subscriptions.c.current_period_end,
                subscriptions.c.status == "active",
                subscriptions.c.current_period_end <= now,
                ~_held_by_suspension(),
            ),
            "retries": _due(
                subscriptions,
                subscriptions.c.next_retry_at,
                subscriptions.c.status == "past_due",
                subscriptions.c.next_retry_at <= now,
                ~_held_by_suspension(),
            ),
            "trial_notices": _due(
                trials,
                trials.c.notice_at,
                trials.c.status == "active",
                trials.c.notice_sent_at.is_(None),
                trials.c.notice_at <= now,
            ),
            "trial_expiries": _due(trials, trials.c.ends_at, trials.c.status == "active", trials.c.ends_at <= now),
            "notice_deliveries": _due(
                notices, notices.c.next_attempt_at, notices.c.status == "pending", notices.c.next_attempt_at <= wall
            ),
            "refund_retries": _due(
                refunds, refunds.c.created_at, refunds.c.status == "pending", refunds.c.created_at <= now - STUCK_AFTER
            ),
        }
        # B1: every cancellation not yet confirmed, leased or due (its mark is real time, moved on by each try).
        queries["payment_cancellations"] = _due(
            payments, payments.c.gateway_cancel_due_at, payments.c.gateway_cancel_due_at.is_not(None)
        )
        due = {}
        for job, query in queries.items():
            count, oldest = (await conn.execute(query)).one()
            due[job] = Due(count, oldest)
        stuck = (
            await conn.execute(
                select(func.count())
                .select_from(payments.join(subscriptions, payments.c.subscription_id == subscriptions.c.id))
                .where(
                    payments.c.status == "pending",
                    payments.c.purpose.in_(("renewal", "retry")),
                    or_(subscriptions.c.claimed_until.is_(None), subscriptions.c.claimed_until <= wall - STUCK_AFTER),
                    payments.c.created_at <= now - STUCK_AFTER,
                )
            )
        ).scalar_one()
        retries = dict(
            (
                await conn.execute(
                    select(payments.c.status, func.count())
                    .where(
                        and_(
                            payments.c.purpose == "retry",
                            payments.c.status.in_(("succeeded", "failed")),
                            payments.c.updated_at > now - _dt.timedelta(hours=24),
                        )
                    )
                    .group_by(payments.c.status)
                )
            ).all()
        )
    return due, stuck, retries, now, wall


async def _corrections_failed(conn) -> int:  # noqa: ANN001
    """B1/R2: failed correction refunds of payments not refunded in full since (by a re-issued refund)."""
    return (
        await conn.execute(
            select(func.count(func.distinct(refunds.c.payment_id)))
            .select_from(refunds.join(payments, payments.c.id == refunds.c.payment_id))
            .where(
                refunds.c.source == "correction",
                refunds.c.status == "failed",
                payments.c.refunded_amount < payments.c.amount,
            )
        )
    ).scalar_one()


class Backlog:
    """The backlog gauges of one process, refreshed from the database when scraped (at most every `ttl`)."""

    def __init__(self, registry: CollectorRegistry, ttl_seconds: float) -> None:
        self.ttl = _dt.timedelta(seconds=ttl_seconds)
        self.refreshed_at: _dt.datetime | None = None
        self.due = Gauge("billing_due_work", "Scheduled work that is due and not yet done", ["job"], registry=registry)
        self.oldest = Gauge(
            "billing_due_work_oldest_seconds",
            "How long the oldest due item has waited (0 when none is due)",
            ["job"],
            registry=registry,
        )
        self.stuck = Gauge(
            "billing_charges_stuck", "Renewal and retry charges pending past their worker's lease", registry=registry
        )
        self.retries = Gauge(
            "billing_dunning_retries_last_24h",
            "B5 retry charges decided in the last 24 hours",
            ["outcome"],
            registry=registry,
        )
        self.corrections_failed = Gauge(
            "billing_corrections_failed",
            "B1 correction refunds the gateway refused, their payments not refunded in full since",
            registry=registry,
        )
        for job in JOBS:  # every series exists from the first scrape, so alerts never see an absent one
            self.due.labels(job).set(0)
            self.oldest.labels(job).set(0)
        for outcome in ("succeeded", "failed"):
            self.retries.labels(outcome).set(0)

    async def refresh(self, ctx: AppContext) -> None:
        wall = ctx.system_clock.wall()
        if self.refreshed_at is not None and wall - self.refreshed_at < self.ttl:
            return
        due, stuck, retries, now, wall = await _read(ctx)
        for job, item in due.items():
            # Job times are the service's clock (the sandbox clock in the sandbox); deliveries are real time.
            reference = wall if job in ("notice_deliveries", "payment_cancellations") else now
            self.due.labels(job).set(item.count)
            self.oldest.labels(job).set(max(0.0, (reference - item.oldest).total_seconds()) if item.oldest else 0)
        self.stuck.set(stuck)
        for outcome in ("succeeded", "failed"):
            self.retries.labels(outcome).set(retries.get(outcome, 0))
        async with ctx.db.read() as conn:
            self.corrections_failed.set(await _corrections_failed(conn))
        self.refreshed_at = wall
