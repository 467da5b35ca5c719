from __future__ import annotations

from fastapi import APIRouter

from app.auth import Caller
from app.context import Ctx
from app.customers.lists import customer_list
from app.http import JSON
from app.pagination import Page
from app.payments import repository
from app.payments.schemas import Payment, PaymentList, to_api

router = APIRouter(tags=["payments"])


@router.get("/v1/payments/{payment_id}", response_model=Payment)
async def get_payment(payment_id: str, ctx: Ctx, caller: Caller) -> JSON:
    async with ctx.db.read() as conn:
        row = await repository.get_visible(conn, caller, payment_id)
    return JSON(to_api(row))


@router.get("/v1/customers/{customer_id}/payments", response_model=PaymentList)
async def list_payments(customer_id: str, ctx: Ctx, caller: Caller, params: Page) -> JSON:
    stmt = repository.for_customer(customer_id)
    return JSON(await customer_list(ctx, caller, customer_id, stmt, repository.LIST_ORDER, params, to_api))
