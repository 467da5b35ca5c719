"""The append-only audit log and the domain events: one recording point for every state change.

An audit row says who did what, when, why and under which policy version; a domain event (api.md "Events and
outbound webhooks") says what changed, for the product's own services: its type, customer, time and the changed
object as its own GET shows it. A use case passes its events to the audit row of the change (`events=`), and
both are written together, in the caller's transaction: an event exists exactly when its change does. The
events table is the outbox that outbound webhooks deliver.

There is deliberately no update or delete function here.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from app.audit import repository
from app.auth import Principal
from app.ids import new_id

SYSTEM = Principal(sub="system", role="ops")  # the scheduler and webhooks act as the system

# A domain event to record with an audit row: its type and the changed object (a route's `to_api` dict).
Event = tuple[str, dict[str, Any]]


def _actor_role(actor: Principal) -> str:
    return "system" if actor is SYSTEM else actor.role


def changed(row: object, **changes: Any) -> SimpleNamespace:
    """A row (read or written: a Row, typed or not by a repository's row protocol, or a dict) as the change leaves
    it, for its `to_api` snapshot: what the transaction wrote, without reading it again."""
    fields = row if isinstance(row, Mapping) else cast(Row[Any], row)._mapping  # a row protocol types a Row
    return SimpleNamespace(**{**fields, **changes})


class AuditRow(dict[str, Any]):
    """An audit row (the parameters of its insert) and the domain event rows recorded with it."""

    __slots__ = ("events",)
    events: list[dict[str, Any]]


def event_row(type_: str, customer_id: str | None, at: _dt.datetime, obj: dict[str, Any]) -> dict[str, Any]:
    """One domain event: `data.object` is the object as its GET renders it (stored in the API's JSON encoding,
    `models.base.APIDocument`)."""
    return {"id": new_id("evt"), "type": type_, "customer_id": customer_id, "created_at": at, "data": {"object": obj}}


def audit_row(
    actor: Principal,
    action: str,
    at: _dt.datetime,
    *,
    subject_type: str,
    subject_id: str,
    customer_id: str | None,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
    policy_version: str | None = None,
    events: Iterable[Event] = (),
) -> AuditRow:
    """`events`: the domain events of this change, (type, object) pairs, recorded with the row (same customer,
    same time)."""
    row = AuditRow(
        {
            "id": new_id("evt"),
            "occurred_at": at,
            "actor": actor.sub,
            "actor_role": _actor_role(actor),
            "action": action,
            "customer_id": customer_id,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "reason": reason,
            "data": data or {},
            "policy_version": policy_version,
        }
    )
    row.events = [event_row(type_, customer_id, at, obj) for type_, obj in events]
    return row


async def record(
    conn: AsyncConnection,
    actor: Principal,
    action: str,
    at: _dt.datetime,
    *,
    notices: Sequence[Mapping[str, Any]] = (),
    **fields: Any,
) -> None:
    """Append one audit event, and the domain events given as `events=`, in the caller's transaction (so they
    exist exactly when the change does). `notices`: notice rows the change queues (app/notices/service.py
    `notice_row`), written with them, each at most once per `dedupe_key`. One statement on PostgreSQL."""
    row = audit_row(actor, action, at, **fields)
    await repository.append_change(conn, row, row.events, notices)


async def record_many(conn: AsyncConnection, rows: list[AuditRow]) -> None:
    """Append a batch of audit rows built with `audit_row` and their domain events (scheduled jobs write in
    batches): one multi-row insert for each table, whatever the size of the batch."""
    if rows:
        await repository.append(conn, rows)
        evts = [event for row in rows for event in row.events]
        if evts:
            await repository.append_events(conn, evts)
