from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.audit import repository
from app.audit.schemas import AuditEventList, to_api
from app.auth import OpsCaller
from app.context import Ctx
from app.http import JSON, page
from app.pagination import Page

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
    async with ctx.db.read() as conn:
        rows, has_more = await repository.page(
            conn, params, customer_id=customer_id, action=action, subject_id=subject_id, actor=actor
        )
    return JSON(page([to_api(r) for r in rows], has_more))
