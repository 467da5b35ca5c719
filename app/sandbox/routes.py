"""Sandbox only (BILLING_SANDBOX): the test clock and running due jobs on demand. Not mounted otherwise (404)."""

from __future__ import annotations

import datetime as _dt
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator
from starlette.responses import Response

from app.auth import Caller, OpsCaller
from app.clock import SandboxClock
from app.context import Ctx
from app.http import JSON
from app.idempotency import idempotent_in_unit_of_work
from app.scheduler.registry import run_due
from app.schemas import RequestModel
from app.uow import unit_of_work

router = APIRouter(prefix="/v1/sandbox", tags=["sandbox"])


def _rfc3339(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("an RFC 3339 time with a UTC offset, e.g. 2030-01-01T00:00:00Z")
    return value


LATEST = _dt.datetime(9000, 1, 1, tzinfo=_dt.UTC)  # far enough; later dates overflow period arithmetic


def _computable(value: _dt.datetime) -> _dt.datetime:
    try:
        value = value.astimezone(_dt.UTC)
    except OverflowError:
        raise ValueError("the time is outside the range the service computes with") from None
    if value >= LATEST:
        raise ValueError(f"the sandbox clock goes up to {LATEST.isoformat()}")
    return value


class ClockMove(RequestModel):
    now: Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_computable)]


class Clock(BaseModel):
    object: Literal["sandbox_clock"] = "sandbox_clock"
    now: _dt.datetime


class RunDue(BaseModel):
    object: Literal["sandbox_run"] = "sandbox_run"
    now: _dt.datetime
    jobs: dict[str, int]


@router.get("/clock", response_model=Clock)
async def get_clock(ctx: Ctx, caller: Caller) -> Response:
    return JSON({"object": "sandbox_clock", "now": await ctx.clock.now()})


@router.post("/clock", response_model=Clock)
@idempotent_in_unit_of_work
async def move_clock(body: ClockMove, ctx: Ctx, caller: OpsCaller) -> Response:
    clock = ctx.clock
    assert isinstance(clock, SandboxClock)  # this router is mounted only in the sandbox, whose clock it is
    async with unit_of_work(ctx) as uow:
        now = await clock.advance_to(uow.conn, body.now)
        return uow.respond(JSON({"object": "sandbox_clock", "now": now}))


@router.post("/run-due", response_model=RunDue)
async def run_due_now(ctx: Ctx, caller: OpsCaller) -> Response:
    now = await ctx.clock.now()
    return JSON({"object": "sandbox_run", "now": now, "jobs": await run_due(ctx, now)})
