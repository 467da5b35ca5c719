"""The scheduled-work benchmarks, run in this process against the app's own code: a context built with
`app.main.build_context` (as `billing scheduler` builds it) and the jobs of `app.scheduler.registry`."""

from __future__ import annotations

import asyncio
import datetime as _dt
import time
from collections.abc import Awaitable, Callable
from typing import ClassVar

from sqlalchemy import text

from app.config import Settings
from app.context import AppContext
from app.main import build_context
from app.scheduler import registry

SWEEP_JOBS = ("trial_expiring_notices", "trial_expiry")


def settings_for(database_url: str, auth_secret: str) -> Settings:
    return Settings(
        database_url=database_url,
        auth_secret=auth_secret,
        sandbox=True,
        scheduler_enabled=False,
        log_level="WARNING",
        rate_limit_writes_per_minute=0,
    )


class Runner:
    """One event loop and one context per database for the whole benchmark (the connection pool stays warm, as in
    a long-running scheduler)."""

    def __init__(self, database_url: str, auth_secret: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.ctx: AppContext = build_context(settings_for(database_url, auth_secret))
        self.run(self._ping())

    def run(self, coro: Awaitable):
        return self.loop.run_until_complete(coro)

    async def _ping(self) -> None:
        async with self.ctx.db.read() as conn:
            await conn.execute(text("SELECT 1"))

    def close(self) -> None:
        self.run(self.ctx.gateway.aclose())
        self.run(self.ctx.db.dispose())
        self.loop.close()


async def run_jobs(ctx: AppContext, now: _dt.datetime, names: tuple[str, ...]) -> dict[str, int]:
    """The named jobs of the registry, each run to completion exactly as `run_due` runs every job."""
    done: dict[str, int] = {}
    for job in registry.registered_jobs():
        if job.name not in names:
            continue
        done[job.name] = await registry.run_job(ctx, job, now)
    return done


def timed_sweep(runner: Runner, now: _dt.datetime) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    done = runner.run(run_jobs(runner.ctx, now, SWEEP_JOBS))
    return time.perf_counter() - started, done


class JobTimer:
    """Times each job of one `run_due` call by wrapping the job functions where `registered_jobs` imports them
    from (measurement only; the jobs run unchanged): from the start of its first batch to the end of its last (a
    job with several workers has batches in flight at once)."""

    TARGETS: ClassVar[dict[str, tuple[str, ...]]] = {
        "app.subscriptions.tasks": (
            "end_canceled_subscriptions",
            "renew_subscriptions",
            "retry_failed_renewals",
            "expire_incomplete_purchases",
        ),
        "app.trials.tasks": ("send_trial_expiring_notices", "expire_trials"),
        "app.refunds.service": ("retry_pending_refunds",),
        "app.notices.delivery": ("deliver_notices",),
        "app.idempotency": ("purge_expired_keys",),
    }

    def __init__(self) -> None:
        self.spans: dict[str, tuple[float, float]] = {}
        self._saved: list[tuple[object, str, Callable]] = []

    def __enter__(self) -> JobTimer:
        import importlib

        for module_name, names in self.TARGETS.items():
            module = importlib.import_module(module_name)
            for name in names:
                original = getattr(module, name)
                self._saved.append((module, name, original))
                setattr(module, name, self._wrap(name, original))
        return self

    def _wrap(self, name: str, original: Callable) -> Callable:
        async def timed(ctx, now):
            started = time.perf_counter()
            try:
                return await original(ctx, now)
            finally:
                first, _ = self.spans.get(name, (started, started))
                self.spans[name] = (min(first, started), time.perf_counter())

        return timed

    @property
    def seconds(self) -> dict[str, float]:
        return {name: end - start for name, (start, end) in self.spans.items()}

    def __exit__(self, *exc) -> None:
        for module, name, original in self._saved:
            setattr(module, name, original)


def timed_run_due(runner: Runner, now: _dt.datetime) -> tuple[float, dict[str, int], dict[str, float]]:
    with JobTimer() as timer:
        started = time.perf_counter()
        done = runner.run(registry.run_due(runner.ctx, now))
        elapsed = time.perf_counter() - started
    return elapsed, done, timer.seconds
