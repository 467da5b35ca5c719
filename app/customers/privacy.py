"""Personal data rights: export (D1) and erasure (D3). Correction (D2) and the marketing choice (D4) are in
`service.update_customer`."""

from __future__ import annotations

import hashlib

import orjson
from sqlalchemy import LargeBinary, Text, bindparam, cast, delete, literal, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.access.service import access_document
from app.audit.routes import to_api as audit_to_api
from app.audit.service import changed, record
from app.auth import Principal
from app.context import AppContext
from app.credits.schemas import to_api as credit_to_api
from app.customers import repository
from app.customers.schemas import to_api as customer_to_api
from app.customers.standing import end_everything
from app.events.routes import to_api as event_to_api
from app.http import dumps
from app.models import (
    audit_events,
    credit_entries,
    customers,
    events,
    idempotency_keys,
    notices,
    payments,
    refunds,
    subscriptions,
    trials,
    webhook_events,
)
from app.notices.schemas import to_api as notice_to_api
from app.payments.schemas import to_api as payment_to_api
from app.refunds.schemas import to_api as refund_to_api
from app.subscriptions.schemas import to_api as subscription_to_api
from app.trials.schemas import to_api as trial_to_api
from app.uow import UnitOfWork
from policies import ERASED, AccessFacts, access, erase_from_response, redact

EXPORT_SCHEMA_VERSION = 1


async def export(ctx: AppContext, principal: Principal, customer_id: str) -> dict:
    """D1: every personal datum held about the customer, and everything linked to it, in one JSON document."""
    async with ctx.db.read() as conn:
        customer = await repository.get_visible(conn, principal, customer_id)

        async def rows(table, to_api, column=None):  # noqa: ANN001, ANN202
            column = column if column is not None else table.c.customer_id
            result = await conn.execute(select(table).where(column == customer_id).order_by(table.c.id))
            return [to_api(r) for r in result.all()]

        document = {
            "object": "customer_export",
            "schema_version": EXPORT_SCHEMA_VERSION,
            "generated_at": await ctx.clock.now(conn),
            "customer": customer_to_api(customer),
            "subscriptions": await rows(subscriptions, subscription_to_api),
            "trials": await rows(trials, trial_to_api),
            "payments": await rows(payments, payment_to_api),
            "refunds": await rows(refunds, refund_to_api),
            "credits": await rows(credit_entries, credit_to_api),
            "notices": await rows(notices, notice_to_api),
            "audit_events": await rows(audit_events, audit_to_api),
            "events": await rows(events, event_to_api),  # their snapshots show the customer too
        }
    return document


def pseudonym(key: str, value: str) -> str:
    """An irreversible stand-in for an identifier (keyed, so it cannot be recomputed from a guess)."""
    return "erased:" + hashlib.blake2b(value.encode(), key=key.encode()[:64], digest_size=12).hexdigest()


async def erase(uow: UnitOfWork, principal: Principal, customer_id: str):
    """D3: access ends at once (nothing refunded); personal fields are removed, identifiers pseudonymised;
    payments, refunds and taxes stay for the books, unlinked from any readable identity. Every copy goes: staff's
    free text about the person (refund and credit reasons, audit reasons), stored idempotent responses that show
    the customer (any caller's), and the Stripe events about their payments and their gateway customer in the
    webhook inbox. The trial-once marks (T5) are keyed hashes already and stay. A few set-based statements;
    repeating an erasure changes nothing."""
    conn, ctx, now = uow.conn, uow.ctx, uow.now
    customer = await repository.get_visible(conn, principal, customer_id, for_update=True)
    if customer.status == "erased":
        return customer
    # The person erasing themselves acts under a pseudonym from here on (the forfeited credit, the audit trail).
    actor = (
        principal
        if principal.is_ops
        else Principal(sub=pseudonym(ctx.settings.identity_key, principal.sub), role="customer")
    )
    await end_everything(conn, ctx, actor, customer.id, now, "erased", None)
    identifiers = [customer.name, customer.email, customer.external_id]
    await conn.execute(
        update(customers)
        .where(customers.c.id == customer.id)
        .values(
            email=None,
            name=None,
            country=None,
            external_id=None,
            gateway_customer_id=None,
            status="erased",
            marketing_opt_out=True,
            updated_at=now,
        )
    )
    await conn.execute(
        update(notices)
        .where(notices.c.customer_id == customer.id)
        .values(subject=ERASED, body="", status="skipped", last_error=None)
    )
    for table in (refunds, credit_entries):
        await _redact_column(conn, table, table.c.customer_id == customer.id, "reason", identifiers)
    await _scrub_stored_responses(conn, ctx, customer.id, identifiers)
    await _scrub_webhook_inbox(conn, customer.id, customer.gateway_customer_id)
    if customer.external_id:
        await conn.execute(
            delete(idempotency_keys).where(idempotency_keys.c.caller == f"customer:{customer.external_id}")
        )
        alias = pseudonym(ctx.settings.identity_key, customer.external_id)
        if ctx.db.is_postgres:  # the append-only trigger lets an erasure through, and nothing else
            await conn.execute(text("SET LOCAL billing.erasure = 'on'"))
        await conn.execute(
            update(audit_events)
            .where(audit_events.c.actor == customer.external_id, audit_events.c.actor_role == "customer")
            .values(actor=alias)
        )
        await conn.execute(
            update(audit_events)
            .where(audit_events.c.customer_id == customer.id, audit_events.c.reason.is_not(None))
            .values(reason=ERASED)
        )
        if ctx.db.is_postgres:
            await conn.execute(text("SET LOCAL billing.erasure = 'off'"))
    await _scrub_events(conn, customer.id, identifiers)
    erased = changed(
        customer,
        email=None,
        name=None,
        country=None,
        external_id=None,
        gateway_customer_id=None,
        status="erased",
        marketing_opt_out=True,
        updated_at=now,
    )
    await record(
        conn,
        actor,
        "customer.erased",
        now,
        subject_type="customer",
        subject_id=customer.id,
        customer_id=customer.id,
        policy_version=ctx.policies.at(now).version,
        events=[
            ("customer.erased", customer_to_api(erased)),
            ("access.changed", access_document(access(AccessFacts(customer_status="erased"), now))),
        ],
    )
    return await repository.get(conn, customer.id)


async def _redact_column(conn: AsyncConnection, table, where, column: str, identifiers: list) -> None:  # noqa: ANN001
    """D3: staff's free text about the person keeps its sense, not the person (policies.redact): one read of the
    customer's rows, one statement for those that named them. Any e-mail address in the customer's own records is
    taken as theirs (perhaps one corrected since, D2, which the service no longer holds) and goes too."""
    rows = (await conn.execute(select(table.c.id, table.c[column]).where(where, table.c[column].is_not(None)))).all()
    changed = [
        {"b_id": row.id, "b_text": redacted}
        for row in rows
        if (redacted := redact(row[1], identifiers, every_email=True)) != row[1]
    ]
    if changed:
        await conn.execute(
            update(table).where(table.c.id == bindparam("b_id")).values({column: bindparam("b_text")}), changed
        )


async def _scrub_events(conn: AsyncConnection, customer_id: str, identifiers: list) -> None:
    """D3: the customer's domain events keep what happened, not who it happened to (policies.erase_from_response,
    as for stored responses): the customer's personal fields in their snapshots are emptied, the identifiers (and
    any e-mail address) in free text replaced; ids, codes, statuses and timestamps exactly as they were (one read,
    one statement for the events that changed)."""
    rows = (await conn.execute(select(events.c.id, events.c.data).where(events.c.customer_id == customer_id))).all()
    scrubbed = [
        {"b_id": row.id, "b_data": data}
        for row in rows
        if (data := erase_from_response(row.data, customer_id, identifiers, every_email=True)) != row.data
    ]
    if scrubbed:
        await conn.execute(
            update(events).where(events.c.id == bindparam("b_id")).values(data=bindparam("b_data")), scrubbed
        )


async def _scrub_stored_responses(conn: AsyncConnection, ctx: AppContext, customer_id: str, identifiers: list) -> None:
    """D3: a stored idempotent response that shows the customer (found by their id, which every object of theirs
    carries, whoever the caller) is kept, so a retry still replays instead of acting twice, but shows them as
    erased (policies.erase_from_response): the Customer object's personal fields emptied, the identifiers (and any
    e-mail address) in free text replaced; ids, codes, statuses and timestamps exactly as they were."""
    body, pattern = idempotency_keys.c.response_body, f"%{customer_id}%"
    # bytea LIKE bytea on PostgreSQL; SQLite's LIKE reads a blob only once cast to text.
    mentions = (
        body.op("LIKE")(literal(pattern.encode(), LargeBinary))
        if ctx.db.is_postgres
        else cast(body, Text).like(pattern)
    )
    rows = (await conn.execute(select(idempotency_keys.c.caller, idempotency_keys.c.key, body).where(mentions))).all()
    changed = []
    for row in rows:
        try:
            body = dumps(
                erase_from_response(orjson.loads(row.response_body), customer_id, identifiers, every_email=True)
            )
        except orjson.JSONDecodeError:
            text_body = row.response_body.decode("utf-8", "replace")
            body = (redact(text_body, identifiers, every_email=True) or "").encode()
        if body != row.response_body:
            changed.append({"b_caller": row.caller, "b_key": row.key, "b_body": body})
    if changed:
        await conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.caller == bindparam("b_caller"), idempotency_keys.c.key == bindparam("b_key"))
            .values(response_body=bindparam("b_body")),
            changed,
        )


async def _scrub_webhook_inbox(conn: AsyncConnection, customer_id: str, gateway_customer: str | None) -> None:
    """D3: Stripe's events about the customer's payments carry their e-mail and name (`receipt_email`,
    `billing_details`), and so do those about their gateway customer (`customer.*`, and `payment_method.*` whose
    `customer` it is): their payloads are emptied in one statement; the event id, type, object and outcome stay,
    so a repeated delivery is still recognised. (Events of types the service does not act on are stored without
    their payload in the first place: app/webhooks/service.py.)"""
    their_intents = select(payments.c.gateway_payment_id).where(
        payments.c.customer_id == customer_id, payments.c.gateway_payment_id.is_not(None)
    )
    about_intent = webhook_events.c.payload[("data", "object", "payment_intent")].as_string()
    about_them = webhook_events.c.object_id.in_(their_intents) | about_intent.in_(their_intents)
    if gateway_customer:
        of_customer = webhook_events.c.payload[("data", "object", "customer")].as_string()
        about_them = about_them | (webhook_events.c.object_id == gateway_customer) | (of_customer == gateway_customer)
    await conn.execute(update(webhook_events).where(about_them).values(payload={"erased": True}, note=None))
