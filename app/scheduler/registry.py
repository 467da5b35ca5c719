"""The scheduled jobs, in the order they run, and `run_due`, which runs them all to completion.

Each job processes one claimed batch of due work per call and returns how many items it did; `run_due` calls it
again until nothing is left. Jobs are idempotent and claim their rows atomically, so several replicas (or the
scheduler and a sandbox `run-due`) may run them at once.
"""

from __future__ import annotations

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


def registered_jobs() -> list[Job]:
    from app.idempotency import purge_expired_keys
    from app.notices.delivery import deliver_notices
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
        Job("subscription_renewals", renew_subscriptions),  # B2, B3
        Job("subscription_retries", retry_failed_renewals),  # B5
        Job("incomplete_purchase_expiry", expire_incomplete_purchases),  # B1
        Job("trial_expiring_notices", send_trial_expiring_notices),  # T4, before expiry so none is skipped
        Job("trial_expiry", expire_trials),  # T3
        Job("refund_retries", retry_pending_refunds),  # R2: refunds whose gateway call got no answer
        Job("deliver_notices", deliver_notices),  # last: delivers what the jobs above queued
        Job("purge_idempotency_keys", purge_expired_keys),
    ]


async def run_due(ctx: AppContext, now: _dt.datetime) -> dict[str, int]:
    """Run every job that is due at `now` until it has nothing left; returns items done per job."""
    done: dict[str, int] = {}
    for job in registered_jobs():
        total = 0
        for _ in range(MAX_BATCHES_PER_RUN):
            count = await job.run(ctx, now)
            total += count
            if count == 0:
                break
        done[job.name] = total
        if total:
            ctx.metrics.jobs.labels(job.name).inc(total)
            log.info("job done", extra={"job": job.name, "items": total})
    return done
