"""Health, readiness and metrics: no token needed."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import PlainTextResponse, Response

from app.context import Ctx
from app.health.queries import ping
from app.http import JSON, problem_response

log = logging.getLogger("billing.metrics")
router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> Response:
    return JSON({"status": "ok"})


@router.get("/readyz")
async def readyz(ctx: Ctx) -> Response:
    try:
        async with ctx.db.read() as conn:
            await ping(conn)
    except Exception as exc:  # any failure to reach the database means "not ready"
        return problem_response("service_unavailable", f"database unreachable: {type(exc).__name__}")
    return JSON({"status": "ready"})


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    response_description="Prometheus text exposition format (text/plain; version=0.0.4)",
)
async def metrics(ctx: Ctx) -> Response:
    try:
        await ctx.metrics.backlog.refresh(ctx)
    except Exception:
        log.warning("backlog metrics not refreshed: the database did not answer", exc_info=True)
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
