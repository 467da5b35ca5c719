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

from prometheus_client import CollectorRegistry, Gauge

from app.context import AppContext
from app.health import queries
from policies.states import PaymentStatus

STUCK_AFTER = _dt.timedelta(minutes=5)
JOBS: tuple[str, ...] = (
    "renewals",
    "retries",
    "trial_notices",
    "trial_expiries",
    "notice_deliveries",
    "refund_retries",
)
JOBS += ("payment_cancellations",)  # B1: PaymentIntents still to be cancelled at the gateway (real time)
_OUTCOMES = (PaymentStatus.SUCCEEDED, PaymentStatus.FAILED)  # of a retry charge


async def _read(ctx: AppContext) -> tuple[queries.BacklogFigures, _dt.datetime, _dt.datetime]:
    wall = ctx.system_clock.wall()
    async with ctx.db.read() as conn:
        now = await ctx.clock.now(conn)
        figures = await queries.backlog(conn, now, wall, STUCK_AFTER)
    return figures, now, wall


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
        for outcome in _OUTCOMES:
            self.retries.labels(outcome).set(0)

    async def refresh(self, ctx: AppContext) -> None:
        wall = ctx.system_clock.wall()
        if self.refreshed_at is not None and wall - self.refreshed_at < self.ttl:
            return
        figures, now, wall = await _read(ctx)
        for job, item in figures.due.items():
            # Job times are the service's clock (the sandbox clock in the sandbox); deliveries are real time.
            reference = wall if job in ("notice_deliveries", "payment_cancellations") else now
            self.due.labels(job).set(item.count)
            self.oldest.labels(job).set(max(0.0, (reference - item.oldest).total_seconds()) if item.oldest else 0)
        self.stuck.set(figures.stuck)
        for outcome in _OUTCOMES:
            self.retries.labels(outcome).set(figures.retries.get(outcome, 0))
        async with ctx.db.read() as conn:
            self.corrections_failed.set(await queries.corrections_failed(conn))
        self.refreshed_at = wall
