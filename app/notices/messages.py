"""The route of the messages ops send to a customer (announcements, offers); the use case is
`app.notices.service.send_message`. Marketing ones respect the customer's objection (D4); service ones are always
delivered."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import Field

from app.auth import OpsCaller
from app.context import Ctx
from app.http import JSON
from app.idempotency import idempotent_in_unit_of_work
from app.notices import service
from app.notices.schemas import Notice, to_api
from app.schemas import MultiLine, RequestModel, SingleLine
from app.uow import unit_of_work
from policies.states import NoticeCategory

router = APIRouter(prefix="/v1/customers/{customer_id}/messages", tags=["notices"])


class MessageCreate(RequestModel):
    category: Literal["service", "marketing"]
    # The subject becomes an e-mail header: one line, no control characters. The body may have lines and tabs.
    subject: Annotated[str, SingleLine] = Field(
        min_length=1, max_length=200, description="One line of text, without control characters."
    )
    body: Annotated[str, MultiLine] = Field(
        min_length=1,
        max_length=5000,
        description=(
            "Plain text; lines end with a line feed (\\n). Tabs are allowed, other control characters are not."
        ),
    )


@router.post("", status_code=201, response_model=Notice)
@idempotent_in_unit_of_work
async def send_message(customer_id: str, body: MessageCreate, ctx: Ctx, caller: OpsCaller) -> JSON:
    async with unit_of_work(ctx) as uow:
        row = await service.send_message(
            uow, caller, customer_id, NoticeCategory(body.category), body.subject, body.body
        )
        return uow.respond(JSON(to_api(row), status_code=201))
