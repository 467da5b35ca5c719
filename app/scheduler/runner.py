"""APScheduler (3.x) wiring: `billing serve` runs it beside the API, `billing scheduler` runs it alone.

Stopping (SIGTERM, SIGINT) is graceful: `Scheduler.stop` claims no new work (`ctx.shutdown`, checked between jobs
and between batches), lets the running batch finish and be recorded, for up to BILLING_SHUTDOWN_GRACE_SECONDS
from the signal, and only then returns, so that the gateway and the database are closed after it. APScheduler 3's
own shutdown would cancel the running job: each tick therefore runs in a task of its own, which the scheduler's
shutdown does not reach. Past the grace period the tick is cancelled and the log says what was cut off: its claims
run out (the liveness lease, app/subscriptions/tasks.py) and a later run repeats it with the same idempotency
keys, which never charges twice.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from app.context import AppContext
from app.scheduler.registry import run_due

log = logging.getLogger("billing.scheduler")


async def tick(ctx: AppContext) -> None:
    try:
        await run_due(ctx, await ctx.clock.now())
    except Exception:  # a failed tick is logged and retried on the next one; it never kills the scheduler
        log.exception("scheduled run failed")


class Scheduler:
    """Runs `tick` every BILLING_SCHEDULER_INTERVAL_SECONDS (one at a time) until `stop`."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._job: asyncio.Task | None = None  # APScheduler's task for the running job (`_tick`)
        self._running: asyncio.Task | None = None  # the tick that job waits for
        self._scheduler = AsyncIOScheduler(timezone=_dt.UTC)
        self._scheduler.add_job(
            self._tick,
            "interval",
            id="run_due",
            seconds=ctx.settings.scheduler_interval_seconds,
            max_instances=1,
            coalesce=True,
            next_run_time=ctx.system_clock.wall(),
        )

    def start(self) -> Scheduler:
        self._scheduler.start()
        return self

    async def _tick(self) -> None:
        if self.ctx.shutdown.requested:
            return
        self._job = asyncio.current_task()
        self._running = asyncio.create_task(tick(self.ctx))
        await asyncio.wait({self._running})  # ends when the tick ends, even a cancelled one, without raising

    async def stop(self) -> bool:
        """Stop claiming work, wait for the running tick (bounded), then stop APScheduler (which would have
        cancelled it); True when nothing was cut off."""
        self.ctx.shutdown.request()
        self._scheduler.pause()  # no new tick
        job, running = self._job, self._running
        grace = self.ctx.settings.shutdown_grace_seconds
        cut_off: list[str] = []
        if job is not None and not job.done():
            left = self.ctx.shutdown.remaining(grace)
            log.info(
                "shutting down: no new work is claimed; waiting up to %.0f s for the running batch to finish", left
            )
            while not job.done() and (left := self.ctx.shutdown.remaining(grace)) > 0:
                await asyncio.wait({job}, timeout=min(left, 0.25))  # a second signal cuts the wait short
            if not job.done() and running is not None:
                cut_off = self.ctx.shutdown.in_flight() or ["the scheduled run"]
                running.cancel()
                await asyncio.wait({job})
        self._scheduler.shutdown(wait=False)
        if cut_off:
            log.warning(
                "scheduler stopped before the running work finished (its %g s grace period ran out, or a "
                "second signal came), cutting off: %s. Their claims run out within seconds and a later run "
                "takes them over with the same idempotency keys (nothing is charged twice)",
                grace,
                "; ".join(cut_off),
                extra={"cut_off": cut_off},
            )
            return False
        log.info("scheduler stopped gracefully: no work was cut off")
        return True


def start_scheduler(ctx: AppContext) -> Scheduler:
    return Scheduler(ctx).start()
