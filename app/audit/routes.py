from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from app.audit.schemas import AuditEventList, to_api
from app.auth import OpsCaller
from app.context import Ctx
from app.http import JSON, page
from app.models import audit_events
from app.pagination import Page, fetch_page

router = APIRouter(prefix="/v1/audit-events", tags=["audit"])


@router.get("", response_model=AuditEventList)
async def list_audit_events(
    ctx: Ctx,
    caller: OpsCaller,
    params: Page,
    customer_id: Annotated[str | None, Query(max_length=40)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    subject_id: Annotated[str | None, Query(max_length=40)] = None,
    actor: Annotated[str | None, Query(max_length=255)] = None,
) -> JSON:
    """Who did what, when, why, under which policy version (R2). Ops only."""
    stmt = select(audit_events)
    for column, value in (
        (audit_events.c.customer_id, customer_id),
        (audit_events.c.action, action),
        (audit_events.c.subject_id, subject_id),
        (audit_events.c.actor, actor),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    async with ctx.db.read() as conn:
        rows, has_more = await fetch_page(conn, stmt, audit_events.c.id, params)
    return JSON(page([to_api(r) for r in rows], has_more))
