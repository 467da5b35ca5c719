from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter

from app.auth import Caller, OpsCaller, Principal
from app.context import AppContext, Ctx
from app.customers import privacy, repository, service, standing
from app.customers.repository import CustomerRow
from app.customers.schemas import (
    Customer,
    CustomerCreate,
    CustomerUpdate,
    StandingChange,
    to_api,
)
from app.http import JSON
from app.idempotency import idempotent_in_unit_of_work
from app.uow import UnitOfWork, unit_of_work

# R3: suspend, unsuspend or terminate (app/customers/standing.py): (unit, staff, customer id, reason) -> customer
StandingUseCase = Callable[[UnitOfWork, Principal, str, str], Awaitable[CustomerRow]]

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.post("", status_code=201, response_model=Customer)
@idempotent_in_unit_of_work
async def create_customer(body: CustomerCreate, ctx: Ctx, caller: Caller) -> JSON:
    async with unit_of_work(ctx) as uow:
        row = await service.create_customer(uow, caller, body)
        return uow.respond(JSON(to_api(row), status_code=201))


@router.get("/{customer_id}", response_model=Customer)
async def get_customer(customer_id: str, ctx: Ctx, caller: Caller) -> JSON:
    async with ctx.db.read() as conn:
        row = await repository.get_visible(conn, caller, customer_id)
    return JSON(to_api(row))


@router.patch("/{customer_id}", response_model=Customer)
async def update_customer(customer_id: str, body: CustomerUpdate, ctx: Ctx, caller: Caller) -> JSON:
    async with unit_of_work(ctx) as uow:
        row = await service.update_customer(uow, caller, customer_id, body)
    return JSON(to_api(row))


async def _standing(
    change: StandingUseCase, customer_id: str, body: StandingChange, ctx: AppContext, caller: Principal
) -> JSON:
    async with unit_of_work(ctx) as uow:
        row = await change(uow, caller, customer_id, body.reason)
        return uow.respond(JSON(to_api(row)))


@router.post("/{customer_id}/suspend", response_model=Customer)
@idempotent_in_unit_of_work
async def suspend(customer_id: str, body: StandingChange, ctx: Ctx, caller: OpsCaller) -> JSON:
    return await _standing(standing.suspend, customer_id, body, ctx, caller)


@router.post("/{customer_id}/unsuspend", response_model=Customer)
@idempotent_in_unit_of_work
async def unsuspend(customer_id: str, body: StandingChange, ctx: Ctx, caller: OpsCaller) -> JSON:
    return await _standing(standing.unsuspend, customer_id, body, ctx, caller)


@router.post("/{customer_id}/terminate", response_model=Customer)
@idempotent_in_unit_of_work
async def terminate(customer_id: str, body: StandingChange, ctx: Ctx, caller: OpsCaller) -> JSON:
    return await _standing(standing.terminate, customer_id, body, ctx, caller)


@router.get("/{customer_id}/export")
async def export_customer(customer_id: str, ctx: Ctx, caller: Caller) -> JSON:
    """D1: every personal datum held about the customer, and everything linked to it, as one JSON document."""
    return JSON(await privacy.export(ctx, caller, customer_id))


@router.delete("/{customer_id}", response_model=Customer)
async def erase_customer(customer_id: str, ctx: Ctx, caller: Caller) -> JSON:
    """D3: erasure. Access ends at once, nothing is refunded, the books keep payments unlinked from a name."""
    async with unit_of_work(ctx) as uow:
        row = await privacy.erase(uow, caller, customer_id)
    return JSON(to_api(row))
