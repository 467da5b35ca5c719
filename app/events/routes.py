"""The domain events, newest first (ops): what outbound webhooks deliver, observable through the API."""

from __future__ import annotations

import datetime as _dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.responses import Response

from app.auth import OpsCaller
from app.context import Ctx
from app.errors import NotFound
from app.events import repository
from app.http import JSON, page
from app.pagination import Page

router = APIRouter(prefix="/v1/events", tags=["events"])


class EventData(BaseModel):
    object: dict[str, Any]


class Event(BaseModel):
    object: Literal["event"] = "event"
    id: str
    type: str
    created_at: _dt.datetime
    timestamp: _dt.datetime
    customer_id: str | None
    data: EventData


class EventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Event]
    has_more: bool


def to_api(row) -> dict:  # noqa: ANN001
    """`timestamp` is `created_at` (the Standard Webhooks field receivers order by)."""
    return {
        "object": "event",
        "id": row.id,
        "type": row.type,
        "created_at": row.created_at,
        "timestamp": row.created_at,
        "customer_id": row.customer_id,
        "data": row.data,
    }


@router.get("", response_model=EventList)
async def list_events(
    ctx: Ctx,
    caller: OpsCaller,
    params: Page,
    type: Annotated[str | None, Query(max_length=64)] = None,
    customer_id: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """What happened, newest first; filters `?type=` and `?customer_id=`. Ops only."""
    async with ctx.db.read() as conn:
        rows, has_more = await repository.page(conn, params, type_=type, customer_id=customer_id)
    return JSON(page([to_api(r) for r in rows], has_more))


@router.get("/{event_id}", response_model=Event)
async def get_event(event_id: str, ctx: Ctx, caller: OpsCaller) -> Response:
    async with ctx.db.read() as conn:
        row = await repository.get(conn, event_id)
    if row is None:
        raise NotFound(f"no event {event_id}")
    return JSON(to_api(row))
