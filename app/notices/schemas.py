from __future__ import annotations

import datetime as _dt
from typing import Literal

from pydantic import BaseModel


class Notice(BaseModel):
    object: Literal["notice"] = "notice"
    id: str
    customer_id: str
    type: str
    category: Literal["service", "marketing"]
    status: Literal["pending", "sent", "logged", "skipped"]
    created_at: _dt.datetime
    sent_at: _dt.datetime | None
    subject: str
    body: str


class NoticeList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Notice]
    has_more: bool


def to_api(row) -> dict:  # noqa: ANN001
    return {
        "object": "notice",
        "id": row.id,
        "customer_id": row.customer_id,
        "type": row.type,
        "category": row.category,
        "status": row.status,
        "created_at": row.created_at,
        "sent_at": row.sent_at,
        "subject": row.subject,
        "body": row.body,
    }
