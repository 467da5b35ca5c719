"""Personal data rights: export (D1) and erasure (D3). Correction (D2) and the marketing choice (D4) are in
`service.update_customer`."""

from __future__ import annotations

import hashlib

from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.audit.routes import to_api as audit_to_api
from app.audit.service import record
from app.auth import Principal
from app.context import AppContext
from app.credits.schemas import to_api as credit_to_api
from app.customers import repository
from app.customers.schemas import to_api as customer_to_api
from app.customers.standing import end_everything
from app.models import (
    audit_events,
    credit_entries,
    customers,
    idempotency_keys,
    notices,
    payments,
    refunds,
    subscriptions,
    trials,
)
from app.notices.schemas import to_api as notice_to_api
from app.payments.schemas import to_api as payment_to_api
from app.refunds.schemas import to_api as refund_to_api
from app.subscriptions.schemas import to_api as subscription_to_api
from app.trials.schemas import to_api as trial_to_api

EXPORT_SCHEMA_VERSION = 1
ERASED = "[erased]"


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
        }
    return document


def pseudonym(key: str, value: str) -> str:
    """An irreversible stand-in for an identifier (keyed, so it cannot be recomputed from a guess)."""
    return "erased:" + hashlib.blake2b(value.encode(), key=key.encode()[:64], digest_size=12).hexdigest()


async def erase(conn: AsyncConnection, ctx: AppContext, principal: Principal, customer_id: str):
    """D3: access ends at once (nothing refunded); personal fields are removed, identifiers pseudonymised;
    payments, refunds and taxes stay for the books, unlinked from any readable identity. The trial-once marks
    (T5) are keyed hashes already and stay. Repeating an erasure changes nothing."""
    customer = await repository.get_visible(conn, principal, customer_id, for_update=True)
    if customer.status == "erased":
        return customer
    now = await ctx.clock.now(conn)
    await end_everything(conn, ctx, principal, customer.id, now, "erased", None)
    await conn.execute(update(customers).where(customers.c.id == customer.id).values(
        email=None, name=None, country=None, external_id=None, gateway_customer_id=None, status="erased",
        marketing_opt_out=True, updated_at=now))
    await conn.execute(update(notices).where(notices.c.customer_id == customer.id).values(
        subject=ERASED, body="", status="skipped"))
    if customer.external_id:
        await conn.execute(delete(idempotency_keys).where(idempotency_keys.c.caller == f"customer:{customer.external_id}"))
        alias = pseudonym(ctx.settings.identity_key, customer.external_id)
        if ctx.db.is_postgres:  # the append-only trigger lets an erasure through, and nothing else
            await conn.execute(text("SET LOCAL billing.erasure = 'on'"))
        await conn.execute(update(audit_events).where(audit_events.c.actor == customer.external_id,
                                                      audit_events.c.actor_role == "customer").values(actor=alias))
        await conn.execute(update(audit_events).where(audit_events.c.customer_id == customer.id,
                                                      audit_events.c.reason.is_not(None)).values(reason=ERASED))
        if ctx.db.is_postgres:
            await conn.execute(text("SET LOCAL billing.erasure = 'off'"))
    actor = principal if principal.is_ops else Principal(sub=pseudonym(ctx.settings.identity_key, principal.sub),
                                                         role="customer")
    await record(conn, actor, "customer.erased", now, subject_type="customer", subject_id=customer.id,
                 customer_id=customer.id, policy_version=ctx.policies.at(now).version)
    return await repository.get(conn, customer.id)
