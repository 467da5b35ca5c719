from __future__ import annotations

from fastapi import APIRouter

from app.auth import Caller, OpsCaller
from app.context import Ctx
from app.http import JSON, page
from app.pagination import Page
from app.payments import repository as payment_repo
from app.refunds import repository, service
from app.refunds.schemas import Refund, RefundCreate, RefundList, to_api

router = APIRouter(prefix="/v1/payments/{payment_id}/refunds", tags=["refunds"])


@router.post("", status_code=201, response_model=Refund)
async def create_refund(payment_id: str, body: RefundCreate, ctx: Ctx, caller: OpsCaller) -> JSON:
    """R2: ops only, with a reason; never more than what is left of the payment."""
    return JSON(to_api(await service.create_refund(ctx, caller, payment_id, body)), status_code=201)


@router.get("", response_model=RefundList)
async def list_refunds(payment_id: str, ctx: Ctx, caller: Caller, params: Page) -> JSON:
    async with ctx.db.read() as conn:
        await payment_repo.get_visible(conn, caller, payment_id)
        rows, has_more = await repository.page_of_payment(conn, payment_id, params)
    return JSON(page([to_api(r) for r in rows], has_more))
