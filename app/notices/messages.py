"""Messages ops send to a customer (announcements, offers). Marketing ones respect the customer's objection (D4);
service ones are always delivered."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import Field
from sqlalchemy import select

from app.audit.service import record
from app.auth import OpsCaller
from app.context import Ctx
from app.customers import repository as customer_repo
from app.http import JSON
from app.idempotency import idempotent_in_unit_of_work
from app.ids import new_id
from app.models import notices
from app.notices.schemas import Notice, to_api
from app.notices.service import NewNotice, create_notices
from app.schemas import MultiLine, RequestModel, SingleLine
from app.uow import unit_of_work

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
async def send_message(customer_id: str, body: MessageCreate, ctx: Ctx, caller: OpsCaller):
    async with unit_of_work(ctx) as uow:
        conn, now = uow.conn, uow.now
        customer = await customer_repo.get_visible(conn, caller, customer_id)
        key = new_id("msg")
        await create_notices(
            conn,
            [NewNotice(customer.id, body.category, key, body.subject, body.body, category=body.category)],
            now,
            ctx.system_clock.wall(),
        )
        row = (await conn.execute(select(notices).where(notices.c.dedupe_key == key))).one()
        await record(
            conn,
            caller,
            "notice.message_queued",
            now,
            subject_type="notice",
            subject_id=row.id,
            customer_id=customer.id,
            data={"category": body.category},
        )
        return uow.respond(JSON(to_api(row), status_code=201))
