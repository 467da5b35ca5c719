"""Plan changes (C3): POST /v1/subscriptions/{id}/change and DELETE /v1/subscriptions/{id}/pending-change."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from app.auth import Caller
from app.context import Ctx
from app.http import JSON
from app.idempotency import idempotent_in_unit_of_work
from app.plan_changes import service
from app.plan_changes.schemas import PlanChangeCreate, SubscriptionWithChange, with_change
from app.uow import unit_of_work

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])


@router.post("/{subscription_id}/change", response_model=SubscriptionWithChange)
@idempotent_in_unit_of_work
async def change_plan(subscription_id: str, body: PlanChangeCreate, ctx: Ctx, caller: Caller) -> Response:
    async with unit_of_work(ctx) as uow:
        sub, pending, now = await service.change(uow, caller, subscription_id, body)
        return uow.respond(JSON(with_change(sub, pending, now)))


@router.delete("/{subscription_id}/pending-change", response_model=SubscriptionWithChange)
async def withdraw_pending_change(subscription_id: str, ctx: Ctx, caller: Caller) -> Response:
    async with unit_of_work(ctx) as uow:
        sub, now = await service.withdraw(uow, caller, subscription_id)
        return uow.respond(JSON(with_change(sub, None, now)))
