from __future__ import annotations

import datetime as _dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.responses import Response

from app.audit import repository
from app.auth import OpsCaller
from app.context import Ctx
from app.http import JSON, page
from app.pagination import Page

router = APIRouter(prefix="/v1/audit-events", tags=["audit"])


class AuditEvent(BaseModel):
    object: Literal["audit_event"] = "audit_event"
    id: str
    occurred_at: _dt.datetime
    actor: str
    actor_role: str
    action: str
    customer_id: str | None
    subject_type: str
    subject_id: str
    reason: str | None
    data: dict[str, Any]
    policy_version: str | None


class AuditEventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AuditEvent]
    has_more: bool


def to_api(row) -> dict:  # noqa: ANN001
    return {
        "object": "audit_event",
        **{
            c: getattr(row, c)
            for c in (
                "id",
                "occurred_at",
                "actor",
                "actor_role",
                "action",
                "customer_id",
                "subject_type",
                "subject_id",
                "reason",
                "data",
                "policy_version",
            )
        },
    }


@router.get("", response_model=AuditEventList)
async def list_audit_events(
    ctx: Ctx,
    caller: OpsCaller,
    params: Page,
    customer_id: Annotated[str | None, Query(max_length=40)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    subject_id: Annotated[str | None, Query(max_length=40)] = None,
    actor: Annotated[str | None, Query(max_length=255)] = None,
) -> Response:
    """Who did what, when, why, under which policy version (R2). Ops only."""
    async with ctx.db.read() as conn:
        rows, has_more = await repository.page(
            conn, params, customer_id=customer_id, action=action, subject_id=subject_id, actor=actor
        )
    return JSON(page([to_api(r) for r in rows], has_more))
