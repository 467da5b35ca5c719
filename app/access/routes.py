from __future__ import annotations

import datetime as _dt
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from app.access.service import access_document, customer_access
from app.auth import Caller
from app.context import Ctx
from app.http import JSON

router = APIRouter(prefix="/v1/customers/{customer_id}", tags=["access"])


class Access(BaseModel):
    object: Literal["access"] = "access"
    has_access: bool
    source: Literal["trial", "subscription"] | None
    plan: str | None
    until: _dt.datetime | None
    reason: str


@router.get("/access", response_model=Access)
async def get_access(customer_id: str, ctx: Ctx, caller: Caller) -> JSON:
    d = await customer_access(ctx, caller, customer_id)
    return JSON(access_document(d))
