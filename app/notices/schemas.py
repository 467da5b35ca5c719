from __future__ import annotations

import datetime as _dt
from typing import Literal

from pydantic import BaseModel

from app.models import notices
from app.schemas import ListOf, serialiser
from policies.states import NoticeCategory, NoticeStatus


class Notice(BaseModel):
    object: Literal["notice"] = "notice"
    id: str
    customer_id: str
    type: str
    category: NoticeCategory
    status: NoticeStatus
    created_at: _dt.datetime
    sent_at: _dt.datetime | None
    subject: str
    body: str


class NoticeList(ListOf[Notice]):
    pass


to_api = serialiser(Notice, notices)
