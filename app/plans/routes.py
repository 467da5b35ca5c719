from __future__ import annotations

from fastapi import APIRouter

from app.auth import OpsCaller
from app.context import Ctx
from app.http import JSON, page
from app.idempotency import idempotent_in_unit_of_work
from app.pagination import Page
from app.plans import repository, service
from app.plans.schemas import Plan, PlanCreate, PlanList, PlanUpdate, to_api
from app.uow import unit_of_work

router = APIRouter(prefix="/v1/plans", tags=["plans"])


@router.get("", response_model=PlanList)
async def list_plans(ctx: Ctx, params: Page) -> JSON:
    """Active plans; no token needed."""
    async with ctx.db.read() as conn:
        rows, has_more = await repository.page_of_active(conn, params)
    return JSON(page([to_api(r) for r in rows], has_more))


@router.get("/{code}", response_model=Plan)
async def get_plan(code: str, ctx: Ctx) -> JSON:
    async with ctx.db.read() as conn:
        row = await repository.get_by_code(conn, code)
    return JSON(to_api(row))


@router.post("", status_code=201, response_model=Plan)
@idempotent_in_unit_of_work
async def create_plan(body: PlanCreate, ctx: Ctx, caller: OpsCaller) -> JSON:
    async with unit_of_work(ctx) as uow:
        row = await service.create_plan(uow, caller, body)
        return uow.respond(JSON(to_api(row), status_code=201))


@router.patch("/{code}", response_model=Plan)
async def update_plan(code: str, body: PlanUpdate, ctx: Ctx, caller: OpsCaller) -> JSON:
    async with unit_of_work(ctx) as uow:
        row = await service.update_plan(uow, caller, code, body)
    return JSON(to_api(row))
