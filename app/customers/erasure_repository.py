"""Every statement of an erasure (D3) about what other tables hold of the customer: notices, staff's free text,
stored idempotent responses, the audit trail, domain events and the webhook inbox. What to write is decided by
`app/customers/privacy.py` (with `policies.redact` / `policies.erase_from_response`); the difference between the
two databases stays here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, cast

from sqlalchemy import LargeBinary, Table, Text, bindparam, delete, literal, select, text, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import (
    audit_events,
    credit_entries,
    events,
    idempotency_keys,
    notices,
    payments,
    refunds,
    webhook_events,
)
from policies import NoticeStatus, Role

ReasonKind = Literal["refunds", "credits"]
_REASON_TABLES: dict[str, Table] = {"refunds": refunds, "credits": credit_entries}


class Reason(Protocol):
    """Staff's free text about a refund or a credit of the customer."""

    id: str
    reason: str


class EventData(Protocol):
    """A domain event's snapshot."""

    id: str
    data: Any


class StoredResponse(Protocol):
    """An idempotent response stored under (caller, key)."""

    caller: str
    key: str
    response_body: bytes


def _postgres(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


async def skip_notices(conn: AsyncConnection, customer_id: str, subject: str) -> None:
    """D3: the customer's notices keep no text and are never sent."""
    await conn.execute(
        update(notices)
        .where(notices.c.customer_id == customer_id)
        .values(subject=subject, body="", status=NoticeStatus.SKIPPED, last_error=None)
    )


async def reasons(conn: AsyncConnection, kind: ReasonKind, customer_id: str) -> list[Reason]:
    """D3: the reasons staff wrote on the customer's refunds or credits."""
    table = _REASON_TABLES[kind]
    result = await conn.execute(
        select(table.c.id, table.c.reason).where(table.c.customer_id == customer_id, table.c.reason.is_not(None))
    )
    return cast(list[Reason], list(result.all()))


async def set_reasons(conn: AsyncConnection, kind: ReasonKind, changed: Sequence[tuple[str, str | None]]) -> None:
    """D3: new reasons (id, text) for some of them, in one statement."""
    if changed:
        table = _REASON_TABLES[kind]
        await conn.execute(
            update(table).where(table.c.id == bindparam("b_id")).values(reason=bindparam("b_text")),
            [{"b_id": i, "b_text": t} for i, t in changed],
        )


async def event_data(conn: AsyncConnection, customer_id: str) -> list[EventData]:
    """D3: the snapshots of the customer's domain events."""
    result = await conn.execute(select(events.c.id, events.c.data).where(events.c.customer_id == customer_id))
    return cast(list[EventData], list(result.all()))


async def set_event_data(conn: AsyncConnection, changed: Sequence[tuple[str, Any]]) -> None:
    """D3: new snapshots (id, data) for some of them, in one statement."""
    if changed:
        await conn.execute(
            update(events).where(events.c.id == bindparam("b_id")).values(data=bindparam("b_data")),
            [{"b_id": i, "b_data": d} for i, d in changed],
        )


async def responses_mentioning(conn: AsyncConnection, customer_id: str) -> list[StoredResponse]:
    """D3: the stored idempotent responses that show the customer (found by their id, which every object of
    theirs carries), whoever the caller."""
    body, pattern = idempotency_keys.c.response_body, f"%{customer_id}%"
    # bytea LIKE bytea on PostgreSQL; SQLite's LIKE reads a blob only once cast to text.
    mentions = (
        body.op("LIKE")(literal(pattern.encode(), LargeBinary))
        if _postgres(conn)
        else sql_cast(body, Text).like(pattern)
    )
    result = await conn.execute(select(idempotency_keys.c.caller, idempotency_keys.c.key, body).where(mentions))
    return cast(list[StoredResponse], list(result.all()))


async def set_responses(conn: AsyncConnection, changed: Sequence[tuple[str, str, bytes]]) -> None:
    """D3: new bodies (caller, key, body) for some stored responses, in one statement."""
    if changed:
        await conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.caller == bindparam("b_caller"), idempotency_keys.c.key == bindparam("b_key"))
            .values(response_body=bindparam("b_body")),
            [{"b_caller": c, "b_key": k, "b_body": b} for c, k, b in changed],
        )


async def forget_keys_of(conn: AsyncConnection, caller: str) -> None:
    """D3: the Idempotency-Keys of the customer's own requests go (their responses with them)."""
    await conn.execute(delete(idempotency_keys).where(idempotency_keys.c.caller == caller))


async def pseudonymise_audit(
    conn: AsyncConnection, customer_id: str, external_id: str, alias: str, erased_reason: str
) -> None:
    """D3: the audit trail keeps what happened: the customer as actor becomes `alias`, and the reasons written
    about them `erased_reason`. The trail is append-only; on PostgreSQL its trigger lets an erasure through,
    and nothing else (the setting is local to this transaction and switched off again at once)."""
    postgres = _postgres(conn)
    if postgres:
        await conn.execute(text("SET LOCAL billing.erasure = 'on'"))
    await conn.execute(
        update(audit_events)
        .where(audit_events.c.actor == external_id, audit_events.c.actor_role == Role.CUSTOMER)
        .values(actor=alias)
    )
    await conn.execute(
        update(audit_events)
        .where(audit_events.c.customer_id == customer_id, audit_events.c.reason.is_not(None))
        .values(reason=erased_reason)
    )
    if postgres:
        await conn.execute(text("SET LOCAL billing.erasure = 'off'"))


async def empty_webhook_payloads(conn: AsyncConnection, customer_id: str, gateway_customer: str | None) -> None:
    """D3: Stripe's events about the customer's payments carry their e-mail and name (`receipt_email`,
    `billing_details`), and so do those about their gateway customer (`customer.*`, and `payment_method.*` whose
    `customer` it is): their payloads are emptied in one statement; the event id, type, object and outcome stay,
    so a repeated delivery is still recognised."""
    their_intents = select(payments.c.gateway_payment_id).where(
        payments.c.customer_id == customer_id, payments.c.gateway_payment_id.is_not(None)
    )
    about_intent = webhook_events.c.payload[("data", "object", "payment_intent")].as_string()
    about_them = webhook_events.c.object_id.in_(their_intents) | about_intent.in_(their_intents)
    if gateway_customer:
        of_customer = webhook_events.c.payload[("data", "object", "customer")].as_string()
        about_them = about_them | (webhook_events.c.object_id == gateway_customer) | (of_customer == gateway_customer)
    await conn.execute(update(webhook_events).where(about_them).values(payload={"erased": True}, note=None))
