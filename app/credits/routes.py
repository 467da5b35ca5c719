from __future__ import annotations

from fastapi import APIRouter

from app.auth import Caller, OpsCaller
from app.context import Ctx
from app.credits import repository, service
from app.credits.schemas import Credit, CreditCreate, CreditList, to_api
from app.customers import repository as customer_repo
from app.http import JSON, page
from app.idempotency import idempotent_in_unit_of_work
from app.pagination import Page
from app.uow import unit_of_work

router = APIRouter(prefix="/v1/customers/{customer_id}/credits", tags=["credits"])


@router.post("", status_code=201, response_model=Credit)
@idempotent_in_unit_of_work
async def grant_credit(customer_id: str, body: CreditCreate, ctx: Ctx, caller: OpsCaller) -> JSON:
    async with unit_of_work(ctx) as uow:
        row = await service.grant_credit(uow, caller, customer_id, body)
        return uow.respond(JSON(to_api(row), status_code=201))


@router.get("", response_model=CreditList)
async def list_credits(customer_id: str, ctx: Ctx, caller: Caller, params: Page) -> JSON:
    async with ctx.db.read() as conn:
        await customer_repo.get_visible(conn, caller, customer_id)
        rows, has_more = await repository.page_of_customer(conn, customer_id, params)
        balances = await repository.all_balances(conn, customer_id)
    return JSON({**page([to_api(r) for r in rows], has_more), "balances": balances})
