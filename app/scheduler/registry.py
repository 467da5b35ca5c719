"""The scheduled jobs, in the order they run, and `run_due`, which runs them all to completion.

Each job processes one claimed batch of due work per call and returns how many items it did; `run_due` calls it
again until nothing is left. Jobs are idempotent and claim their rows atomically, so several replicas (or the
scheduler and a sandbox `run-due`) may run them at once. For the same reason a job may have several batches in
flight within one run (`Job.workers`, on PostgreSQL, whose claims skip each other's rows): while one batch waits
for the database, the next is being prepared.

Once the process is asked to stop (`ctx.shutdown`), a run claims nothing new: the flag is checked before each job
and before each batch, so a batch in flight is finished (and recorded) and no other one is started.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.context import AppContext

log = logging.getLogger("billing.jobs")
MAX_BATCHES_PER_RUN = 100_000


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[AppContext, _dt.datetime], Awaitable[int]]
    workers: int = 1  # batches in flight at once on PostgreSQL; one at a time on SQLite (a single writer)


def registered_jobs() -> list[Job]:
    from app.idempotency import purge_expired_keys
    from app.invoices.service import render_pending_pdfs
    from app.notices.delivery import deliver_notices
    from app.payments.corrections import cancel_abandoned_payments
    from app.plan_changes.service import expire_waiting_upgrades
    from app.refunds.service import retry_pending_refunds
    from app.subscriptions.tasks import (
        end_canceled_subscriptions,
        expire_incomplete_purchases,
        renew_subscriptions,
        retry_failed_renewals,
    )
    from app.trials.tasks import expire_trials, send_trial_expiring_notices

    return [
        Job("subscription_period_ends", end_canceled_subscriptions),  # C1
        Job("upgrade_expiry", expire_waiting_upgrades),  # C4: before renewals (the old plan renews untouched)
        Job("subscription_renewals", renew_subscriptions, workers=2),  # B2, B3
        Job("subscription_retries", retry_failed_renewals, workers=2),  # B5
        Job("incomplete_purchase_expiry", expire_incomplete_purchases),  # B1
        Job("payment_cancellations", cancel_abandoned_payments),  # B1: PaymentIntents of abandoned purchases
        Job("trial_expiring_notices", send_trial_expiring_notices),  # T4, before expiry so none is skipped
        Job("trial_expiry", expire_trials),  # T3
        Job("refund_retries", retry_pending_refunds),  # R2: refunds whose gateway call got no answer
        Job("document_pdfs", render_pending_pdfs),  # I1: the PDFs of the invoices the renewal batch issued
        Job("deliver_notices", deliver_notices),  # last: delivers what the jobs above queued
        Job("purge_idempotency_keys", purge_expired_keys),
    ]


async def _run_until_done(ctx: AppContext, job: Job, now: _dt.datetime) -> int:
    total = 0
    for _ in range(MAX_BATCHES_PER_RUN):
        if ctx.shutdown.requested:  # stopping: no new batch is claimed
            break
        count = await job.run(ctx, now)
        total += count
        if count == 0:
            break
    return total


async def run_job(ctx: AppContext, job: Job, now: _dt.datetime) -> int:
    """Run one job until it has nothing left (with its workers' batches in flight at once); returns items done."""
    workers = job.workers if ctx.db.concurrent_writers else 1
    if workers == 1:
        return await _run_until_done(ctx, job, now)
    try:
        async with asyncio.TaskGroup() as group:  # a failing worker stops the others ...
            tasks = [group.create_task(_run_until_done(ctx, job, now)) for _ in range(workers)]
    except ExceptionGroup as failed:
        # ... and the run fails with its error, as with one worker (its own cause kept: no `from`)
        raise failed.exceptions[0]  # noqa: B904 - the worker's own error and cause, unwrapped
    return sum(task.result() for task in tasks)


async def run_due(ctx: AppContext, now: _dt.datetime) -> dict[str, int]:
    """Run every job that is due at `now` until it has nothing left; returns items done per job."""
    done: dict[str, int] = {}
    left: list[str] = []
    for job in registered_jobs():
        if ctx.shutdown.requested:  # stopping: the jobs after the one that was running wait for the next run
            done[job.name] = 0
            left.append(job.name)
            continue
        with ctx.shutdown.working_on(f"job {job.name}"):
            done[job.name] = total = await run_job(ctx, job, now)
        if total:
            ctx.metrics.jobs.labels(job.name).inc(total)
            log.info("job done", extra={"job": job.name, "items": total})
    if left:
        log.info("shutting down: jobs left to the next run: %s", ", ".join(left))
    return done
