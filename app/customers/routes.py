from __future__ import annotations

from fastapi import APIRouter

from app.auth import Caller
from app.context import Ctx
from app.customers import repository, service
from app.customers.schemas import Customer, CustomerCreate, CustomerUpdate, to_api
from app.http import JSON

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.post("", status_code=201, response_model=Customer)
async def create_customer(body: CustomerCreate, ctx: Ctx, caller: Caller):
    async with ctx.db.transaction() as conn:
        row = await service.create_customer(conn, ctx, caller, body)
    return JSON(to_api(row), status_code=201)


@router.get("/{customer_id}", response_model=Customer)
async def get_customer(customer_id: str, ctx: Ctx, caller: Caller):
    async with ctx.db.read() as conn:
        row = await repository.get_visible(conn, caller, customer_id)
    return JSON(to_api(row))


@router.patch("/{customer_id}", response_model=Customer)
async def update_customer(customer_id: str, body: CustomerUpdate, ctx: Ctx, caller: Caller):
    async with ctx.db.transaction() as conn:
        row = await service.update_customer(conn, ctx, caller, customer_id, body)
    return JSON(to_api(row))
