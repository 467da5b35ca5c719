from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from app.auth import Caller
from app.context import Ctx
from app.customers.lists import customer_list
from app.http import JSON
from app.models import notices
from app.notices.schemas import NoticeList, to_api
from app.pagination import Page

customer_router = APIRouter(prefix="/v1/customers/{customer_id}", tags=["notices"])


@customer_router.get("/notices", response_model=NoticeList)
async def list_notices(customer_id: str, ctx: Ctx, caller: Caller, params: Page):
    stmt = select(notices).where(notices.c.customer_id == customer_id)
    return JSON(await customer_list(ctx, caller, customer_id, stmt, notices.c.id, params, to_api))
