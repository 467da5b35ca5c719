"""APScheduler (3.x) wiring: `billing serve` runs it beside the API, `billing scheduler` runs it alone."""

from __future__ import annotations

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


def start_scheduler(ctx: AppContext) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone=_dt.timezone.utc)
    scheduler.add_job(tick, "interval", args=[ctx], id="run_due", seconds=ctx.settings.scheduler_interval_seconds,
                      max_instances=1, coalesce=True, next_run_time=ctx.system_clock.wall())
    scheduler.start()
    return scheduler
