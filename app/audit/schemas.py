"""The audit event as the API shows it (R2): declared once, its OpenAPI schema and `to_api` derived from it."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Literal

from pydantic import BaseModel

from app.models import audit_events
from app.schemas import ListOf, serialiser


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


class AuditEventList(ListOf[AuditEvent]):
    pass


to_api = serialiser(AuditEvent, audit_events)
