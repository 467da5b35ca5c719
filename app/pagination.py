"""Cursor pagination: newest first, `?limit=` (1-100, default 20), `?starting_after=<id>`.

Ids are time-ordered (app.ids), so "newest first" is "id descending" and the cursor is an id comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query
from sqlalchemy import ColumnElement, Row, Select
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True, slots=True)
class PageParams:
    limit: int
    starting_after: str | None


async def page_params(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    starting_after: Annotated[str | None, Query(min_length=1, max_length=40)] = None,
) -> PageParams:
    return PageParams(limit, starting_after)


Page = Annotated[PageParams, Depends(page_params)]


async def fetch_page(
    conn: AsyncConnection, stmt: Select, id_column: ColumnElement[str], params: PageParams
) -> tuple[Sequence[Row[Any]], bool]:
    """A page of `stmt`'s rows, newest first, and whether more follow (one row more is read to know)."""
    if params.starting_after is not None:
        stmt = stmt.where(id_column < params.starting_after)
    rows = (await conn.execute(stmt.order_by(id_column.desc()).limit(params.limit + 1))).all()
    return rows[: params.limit], len(rows) > params.limit
