from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from app.auth import Caller
from app.context import Ctx
from app.customers.lists import customer_list
from app.http import JSON
from app.models import payments
from app.pagination import Page
from app.payments import repository
from app.payments.schemas import Payment, PaymentList, to_api

router = APIRouter(tags=["payments"])


@router.get("/v1/payments/{payment_id}", response_model=Payment)
async def get_payment(payment_id: str, ctx: Ctx, caller: Caller):
    async with ctx.db.read() as conn:
        row = await repository.get_visible(conn, caller, payment_id)
    return JSON(to_api(row))


@router.get("/v1/customers/{customer_id}/payments", response_model=PaymentList)
async def list_payments(customer_id: str, ctx: Ctx, caller: Caller, params: Page):
    stmt = select(payments).where(payments.c.customer_id == customer_id)
    return JSON(await customer_list(ctx, caller, customer_id, stmt, payments.c.id, params, to_api))
