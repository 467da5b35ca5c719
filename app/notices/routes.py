from __future__ import annotations

from fastapi import APIRouter

from app.auth import Caller
from app.context import Ctx
from app.customers import repository as customer_repo
from app.http import JSON, page
from app.notices import repository
from app.notices.schemas import NoticeList, to_api
from app.pagination import Page

customer_router = APIRouter(prefix="/v1/customers/{customer_id}", tags=["notices"])


@customer_router.get("/notices", response_model=NoticeList)
async def list_notices(customer_id: str, ctx: Ctx, caller: Caller, params: Page) -> JSON:
    async with ctx.db.read() as conn:
        await customer_repo.get_visible(conn, caller, customer_id)
        rows, has_more = await repository.page_of_customer(conn, customer_id, params)
    return JSON(page([to_api(r) for r in rows], has_more))
