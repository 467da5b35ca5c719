from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import Caller
from app.context import Ctx
from app.customers.lists import customer_list
from app.http import JSON
from app.idempotency import idempotent_in_unit_of_work
from app.pagination import Page
from app.payments import repository as payment_repo
from app.plan_changes import repository as plan_change_repo
from app.plan_changes.schemas import in_force, pending_to_api
from app.subscriptions import repository, service
from app.subscriptions.repository import SubscriptionRow
from app.subscriptions.schemas import (
    PaymentMethodUpdate,
    Subscription,
    SubscriptionCreate,
    SubscriptionList,
    to_api,
)
from app.uow import unit_of_work
from policies import SubscriptionStatus

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])


@router.post("", status_code=201, response_model=Subscription)
async def purchase(body: SubscriptionCreate, ctx: Ctx, caller: Caller) -> JSON:
    row, client_secret = await service.purchase(ctx, caller, body)
    return JSON(to_api(row, client_secret), status_code=201)


@router.get("/{subscription_id}", response_model=Subscription)
async def get_subscription(subscription_id: str, ctx: Ctx, caller: Caller) -> JSON:
    async with ctx.db.read() as conn:
        row = await repository.get_visible_for_read(conn, caller, subscription_id)
        secret = (
            await payment_repo.pending_client_secret(conn, row.id)
            if row.status == SubscriptionStatus.INCOMPLETE
            else None
        )
        # B2/C1: past its stored period end an active subscription is in its next period (or has ended).
        now = await ctx.clock.now(conn) if row.status == SubscriptionStatus.ACTIVE else None
        # C3/C4: the pending plan change; one due at the period end is in force (B2)
        shown = await plan_change_repo.shown(conn, row.id) if row.has_pending_change else None
        row, pending = in_force(row, shown, now)
    return JSON(to_api(row, secret, now=now, pending_change=pending_to_api(pending)))


@router.post("/{subscription_id}/cancel", response_model=Subscription)
@idempotent_in_unit_of_work
async def cancel(subscription_id: str, ctx: Ctx, caller: Caller) -> JSON:
    async with unit_of_work(ctx) as uow:
        row, now = await service.cancel(uow, caller, subscription_id)
        return uow.respond(JSON(to_api(row, now=now)))


@router.post("/{subscription_id}/resume", response_model=Subscription)
@idempotent_in_unit_of_work
async def resume(subscription_id: str, ctx: Ctx, caller: Caller) -> JSON:
    async with unit_of_work(ctx) as uow:
        row, now = await service.resume(uow, caller, subscription_id)
        return uow.respond(JSON(to_api(row, now=now)))


@router.post("/{subscription_id}/payment-method", response_model=Subscription)
@idempotent_in_unit_of_work
async def change_payment_method(subscription_id: str, body: PaymentMethodUpdate, ctx: Ctx, caller: Caller) -> JSON:
    async with unit_of_work(ctx) as uow:
        row = await service.change_payment_method(uow, caller, subscription_id, body)
        return uow.respond(JSON(to_api(row)))


customer_router = APIRouter(prefix="/v1/customers/{customer_id}", tags=["subscriptions"])


async def _pending_changes(conn: AsyncConnection, rows: Sequence[SubscriptionRow]) -> dict[str, dict[str, Any]]:
    """C3/C4: the pending change of each subscription of a page, as GET shows it (one query for the page)."""
    shown = await plan_change_repo.shown_of(conn, [r.id for r in rows])
    return {sub_id: {"pending_change": pending_to_api(change)} for sub_id, change in shown.items()}


@customer_router.get("/subscriptions", response_model=SubscriptionList)
async def list_subscriptions(customer_id: str, ctx: Ctx, caller: Caller, params: Page) -> JSON:
    stmt = repository.for_customer(customer_id)
    return JSON(
        await customer_list(
            ctx, caller, customer_id, stmt, repository.LIST_ORDER, params, to_api, extras=_pending_changes
        )
    )
