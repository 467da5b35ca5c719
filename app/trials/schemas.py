from __future__ import annotations

import datetime as _dt
from typing import Literal

from pydantic import BaseModel, Field

from app.schemas import RequestModel


class TrialCreate(RequestModel):
    customer_id: str = Field(min_length=1, max_length=40)
    plan: str = Field(min_length=1, max_length=64)


class Trial(BaseModel):
    object: Literal["trial"] = "trial"
    id: str
    customer_id: str
    plan: str
    status: Literal["active", "expired", "forfeited", "terminated"]
    started_at: _dt.datetime
    ends_at: _dt.datetime
    notice_at: _dt.datetime
    ended_at: _dt.datetime | None
    policy_version: str


class TrialList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Trial]
    has_more: bool


def to_api(row) -> dict:  # noqa: ANN001
    return {
        "object": "trial",
        "id": row.id,
        "customer_id": row.customer_id,
        "plan": row.plan_code,
        "status": row.status,
        "started_at": row.started_at,
        "ends_at": row.ends_at,
        "notice_at": row.notice_at,
        "ended_at": row.ended_at,
        "policy_version": row.policy_version,
    }
