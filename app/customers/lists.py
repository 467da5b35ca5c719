"""The lists under a customer (`/v1/customers/{id}/trials`, `/notices`, ...): one helper so each domain's route
is three lines and every list pages, orders and checks ownership the same way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select
from sqlalchemy.ext.asyncio import AsyncConnection

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
    extras: Callable[[AsyncConnection, Sequence[Any]], Awaitable[dict[str, dict[str, Any]]]] | None = None,
) -> dict[str, Any]:
    """One page of the customer's objects; `extras` reads, in one query for the page, fields to add to each object
    (by its id) that are not stored with it."""
    async with ctx.db.read() as conn:
        await repository.get_visible(conn, principal, customer_id)
        rows, has_more = await fetch_page(conn, stmt, id_column, params)
        added = await extras(conn, rows) if extras is not None and rows else {}
    if added:
        return page([{**to_api(r), **added.get(r.id, {})} for r in rows], has_more)
    return page([to_api(r) for r in rows], has_more)
