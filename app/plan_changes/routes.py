"""Plan changes (C3, C4): POST /v1/subscriptions/{id}/change and DELETE /v1/subscriptions/{id}/pending-change."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from app.auth import Caller
from app.context import Ctx
from app.http import JSON
from app.plan_changes import service
from app.plan_changes.schemas import PlanChangeCreate, SubscriptionWithChange, pending_to_api, with_change
from app.uow import unit_of_work

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])


# The Idempotency-Key is claimed apart from the units of work (app/idempotency.py): `when=now` charges the card
# between two units (reserve, gateway call, settle), as a purchase does.
@router.post("/{subscription_id}/change", response_model=SubscriptionWithChange)
async def change_plan(subscription_id: str, body: PlanChangeCreate, ctx: Ctx, caller: Caller) -> Response:
    if body.when == "now":  # C4
        done = await service.upgrade(ctx, caller, subscription_id, body)
        extra = {
            "forfeited_days": done.forfeited_days,
            "forfeited_value": {"amount": done.forfeited_value, "currency": done.sub.currency},
        }
        shown = with_change(done.sub, None, done.now, **extra)
        shown["pending_change"] = pending_to_api(done.change, done.client_secret)
        return JSON(shown)
    async with unit_of_work(ctx) as uow:  # C3
        sub, pending, now = await service.change(uow, caller, subscription_id, body)
        return uow.respond(JSON(with_change(sub, pending, now)))


@router.delete("/{subscription_id}/pending-change", response_model=SubscriptionWithChange)
async def withdraw_pending_change(subscription_id: str, ctx: Ctx, caller: Caller) -> Response:
    async with unit_of_work(ctx) as uow:
        sub, now = await service.withdraw(uow, caller, subscription_id)
        return uow.respond(JSON(with_change(sub, None, now)))
