"""The append-only audit log: every state change and ops action, with actor, time, reason and policy version.

There is deliberately no update or delete function here.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import Principal
from app.ids import new_id
from app.models import audit_events

SYSTEM = Principal(sub="system", role="ops")  # the scheduler and webhooks act as the system


def _actor_role(actor: Principal) -> str:
    return "system" if actor is SYSTEM else actor.role


def audit_row(actor: Principal, action: str, at: _dt.datetime, *, subject_type: str, subject_id: str,
              customer_id: str | None, reason: str | None = None, data: dict[str, Any] | None = None,
              policy_version: str | None = None) -> dict[str, Any]:
    return {
        "id": new_id("evt"), "occurred_at": at, "actor": actor.sub, "actor_role": _actor_role(actor),
        "action": action, "customer_id": customer_id, "subject_type": subject_type, "subject_id": subject_id,
        "reason": reason, "data": data or {}, "policy_version": policy_version,
    }


# One statement object for every append: rows travel as parameters, so neither the construct nor its cache key is
# rebuilt per event (`insert(...).values(row)` would build both each time).
_APPEND = insert(audit_events)


async def record(conn: AsyncConnection, actor: Principal, action: str, at: _dt.datetime, **fields: Any) -> None:
    """Append one audit event in the caller's transaction (so it exists exactly when the change does)."""
    await conn.execute(_APPEND, audit_row(actor, action, at, **fields))


async def record_many(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Append a batch of audit events built with `audit_row` (scheduled jobs write in batches)."""
    if rows:
        await conn.execute(_APPEND, rows)
