"""The lists under a customer (`/v1/customers/{id}/trials`, `/notices`, ...): one helper so each domain's route
is three lines and every list pages, orders and checks ownership the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, Select

from app.auth import Principal
from app.context import AppContext
from app.customers import repository
from app.http import page
from app.pagination import PageParams, fetch_page


async def customer_list(
    ctx: AppContext,
    principal: Principal,
    customer_id: str,
    stmt: Select[Any],
    id_column: ColumnElement[Any],
    params: PageParams,
    to_api: Callable[[Any], dict[str, Any]],
) -> dict[str, Any]:
    async with ctx.db.read() as conn:
        await repository.get_visible(conn, principal, customer_id)
        rows, has_more = await fetch_page(conn, stmt, id_column, params)
    return page([to_api(r) for r in rows], has_more)
