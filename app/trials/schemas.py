from __future__ import annotations

import datetime as _dt
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from app.models import trials
from app.schemas import From, ListOf, RequestModel, serialiser
from policies.states import TrialStatus


class TrialCreate(RequestModel):
    customer_id: str = Field(min_length=1, max_length=40)
    plan: str = Field(min_length=1, max_length=64)


class Trial(BaseModel):
    object: Literal["trial"] = "trial"
    id: str
    customer_id: str
    plan: Annotated[str, From("plan_code")]
    status: TrialStatus
    started_at: _dt.datetime
    ends_at: _dt.datetime
    notice_at: _dt.datetime
    ended_at: _dt.datetime | None
    policy_version: str


class TrialList(ListOf[Trial]):
    pass


to_api = serialiser(Trial, trials)
