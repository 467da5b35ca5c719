from __future__ import annotations

from fastapi import APIRouter

from app.auth import Caller
from app.context import Ctx
from app.customers.lists import customer_list
from app.http import JSON
from app.idempotency import idempotent_in_unit_of_work
from app.pagination import Page
from app.trials import repository, service
from app.trials.schemas import Trial, TrialCreate, TrialList, to_api
from app.uow import unit_of_work

router = APIRouter(prefix="/v1/trials", tags=["trials"])


@router.post("", status_code=201, response_model=Trial)
@idempotent_in_unit_of_work
async def start_trial(body: TrialCreate, ctx: Ctx, caller: Caller) -> JSON:
    async with unit_of_work(ctx) as uow:
        row = await service.start_trial(uow, caller, body)
        return uow.respond(JSON(to_api(row), status_code=201))


@router.get("/{trial_id}", response_model=Trial)
async def get_trial(trial_id: str, ctx: Ctx, caller: Caller) -> JSON:
    async with ctx.db.read() as conn:
        row = await repository.get_visible(conn, caller, trial_id)
    return JSON(to_api(row))


customer_router = APIRouter(prefix="/v1/customers/{customer_id}", tags=["trials"])


@customer_router.get("/trials", response_model=TrialList)
async def list_trials(customer_id: str, ctx: Ctx, caller: Caller, params: Page) -> JSON:
    return JSON(
        await customer_list(
            ctx, caller, customer_id, repository.for_customer(customer_id), repository.PAGE_KEY, params, to_api
        )
    )
