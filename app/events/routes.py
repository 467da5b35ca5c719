"""The domain events, newest first (ops): what outbound webhooks deliver, observable through the API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.auth import OpsCaller
from app.context import Ctx
from app.errors import NotFound
from app.events import repository
from app.events.schemas import Event, EventList, to_api
from app.http import JSON, page
from app.pagination import Page

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.get("", response_model=EventList)
async def list_events(
    ctx: Ctx,
    caller: OpsCaller,
    params: Page,
    type: Annotated[str | None, Query(max_length=64)] = None,
    customer_id: Annotated[str | None, Query(max_length=40)] = None,
) -> JSON:
    """What happened, newest first; filters `?type=` and `?customer_id=`. Ops only."""
    async with ctx.db.read() as conn:
        rows, has_more = await repository.page(conn, params, type_=type, customer_id=customer_id)
    return JSON(page([to_api(r) for r in rows], has_more))


@router.get("/{event_id}", response_model=Event)
async def get_event(event_id: str, ctx: Ctx, caller: OpsCaller) -> JSON:
    async with ctx.db.read() as conn:
        row = await repository.get(conn, event_id)
    if row is None:
        raise NotFound(f"no event {event_id}")
    return JSON(to_api(row))
