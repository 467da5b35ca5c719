"""Sandbox only (BILLING_SANDBOX): the test clock and running due jobs on demand. Not mounted otherwise (404)."""

from __future__ import annotations

import datetime as _dt
from typing import Literal

from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel

from app.auth import Caller, OpsCaller
from app.context import Ctx
from app.http import JSON
from app.scheduler.registry import run_due
from app.schemas import RequestModel

router = APIRouter(prefix="/v1/sandbox", tags=["sandbox"])


class ClockMove(RequestModel):
    now: AwareDatetime


class Clock(BaseModel):
    object: Literal["sandbox_clock"] = "sandbox_clock"
    now: _dt.datetime


class RunDue(BaseModel):
    object: Literal["sandbox_run"] = "sandbox_run"
    now: _dt.datetime
    jobs: dict[str, int]


@router.get("/clock", response_model=Clock)
async def get_clock(ctx: Ctx, caller: Caller):
    return JSON({"object": "sandbox_clock", "now": await ctx.clock.now()})


@router.post("/clock", response_model=Clock)
async def move_clock(body: ClockMove, ctx: Ctx, caller: OpsCaller):
    async with ctx.db.transaction() as conn:
        now = await ctx.clock.advance_to(conn, body.now)
    return JSON({"object": "sandbox_clock", "now": now})


@router.post("/run-due", response_model=RunDue)
async def run_due_now(ctx: Ctx, caller: OpsCaller):
    now = await ctx.clock.now()
    return JSON({"object": "sandbox_run", "now": now, "jobs": await run_due(ctx, now)})
