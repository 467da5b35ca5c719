"""The domain event as the API shows it: declared once, its OpenAPI schema and `to_api` derived from it."""

from __future__ import annotations

import datetime as _dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel

from app.models import events
from app.schemas import From, ListOf, serialiser


class EventData(BaseModel):
    object: dict[str, Any]


class Event(BaseModel):
    object: Literal["event"] = "event"
    id: str
    type: str
    created_at: _dt.datetime
    # The Standard Webhooks field receivers order by: the time it was recorded.
    timestamp: Annotated[_dt.datetime, From("created_at")]
    customer_id: str | None
    # The stored {"object": ...}: the changed object as its own GET rendered it then.
    data: EventData


class EventList(ListOf[Event]):
    pass


to_api = serialiser(Event, events)
