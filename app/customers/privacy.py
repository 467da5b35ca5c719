"""Personal data rights: export (D1) and erasure (D3). Correction (D2) and the marketing choice (D4) are in
`service.update_customer`."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from app.access.service import access_document
from app.audit.schemas import to_api as audit_to_api
from app.audit.service import changed, record
from app.auth import Principal
from app.context import AppContext
from app.credits.schemas import to_api as credit_to_api
from app.customers import erasure_repository as erasure
from app.customers import queries, repository
from app.customers.erasure_repository import ReasonKind
from app.customers.repository import ERASED_FIELDS, CustomerRow
from app.customers.schemas import to_api as customer_to_api
from app.customers.standing import end_everything
from app.events.schemas import to_api as event_to_api
from app.http import dumps
from app.invoices import repository as documents
from app.invoices.schemas import credit_note_to_api, invoice_to_api
from app.models import credit_notes, invoices
from app.notices.schemas import to_api as notice_to_api
from app.payments.schemas import to_api as payment_to_api
from app.refunds.schemas import to_api as refund_to_api
from app.subscriptions.schemas import to_api as subscription_to_api
from app.trials.schemas import to_api as trial_to_api
from app.uow import UnitOfWork
from policies import ERASED, AccessFacts, CustomerStatus, EndedReason, access, erase_from_response, redact

EXPORT_SCHEMA_VERSION = 1


async def export(ctx: AppContext, principal: Principal, customer_id: str) -> dict[str, Any]:
    """D1: every personal datum held about the customer, and everything linked to it, in one JSON document."""
    async with ctx.db.read() as conn:
        customer = await repository.get_visible(conn, principal, customer_id)
        records = await queries.customer_records(conn, customer_id)
        # I3: the documents are kept as issued; after erasure they are not reached through the customer any more
        # (ops read them by id), so an erased customer's export has none.
        kept = customer.status != CustomerStatus.ERASED
        issued = await documents.all_of_customer(conn, invoices, customer_id) if kept else []
        credited = await documents.all_of_customer(conn, credit_notes, customer_id) if kept else []
        generated_at = await ctx.clock.now(conn)
    return {
        "object": "customer_export",
        "schema_version": EXPORT_SCHEMA_VERSION,
        "generated_at": generated_at,
        "customer": customer_to_api(customer),
        "subscriptions": [subscription_to_api(r) for r in records.subscriptions],
        "trials": [trial_to_api(r) for r in records.trials],
        "payments": [payment_to_api(r) for r in records.payments],
        "refunds": [refund_to_api(r) for r in records.refunds],
        "credits": [credit_to_api(r) for r in records.credits],
        "invoices": [invoice_to_api(r) for r in issued],  # I3: kept as issued, exported (D1)
        "credit_notes": [credit_note_to_api(r) for r in credited],
        "notices": [notice_to_api(r) for r in records.notices],
        "audit_events": [audit_to_api(r) for r in records.audit_events],
        "events": [event_to_api(r) for r in records.events],  # their snapshots show the customer too
    }


def pseudonym(key: str, value: str) -> str:
    """An irreversible stand-in for an identifier (keyed, so it cannot be recomputed from a guess)."""
    return "erased:" + hashlib.blake2b(value.encode(), key=key.encode()[:64], digest_size=12).hexdigest()


async def erase(uow: UnitOfWork, principal: Principal, customer_id: str) -> CustomerRow:
    """D3: access ends at once (nothing refunded); personal fields are removed, identifiers pseudonymised;
    payments, refunds and taxes stay for the books, unlinked from any readable identity. Every copy goes: staff's
    free text about the person (refund and credit reasons, audit reasons), stored idempotent responses that show
    the customer (any caller's), and the Stripe events about their payments and their gateway customer in the
    webhook inbox. The trial-once marks (T5) are keyed hashes already and stay. A few set-based statements;
    repeating an erasure changes nothing."""
    conn, ctx, now = uow.conn, uow.ctx, uow.now
    customer = await repository.get_visible(conn, principal, customer_id, for_update=True)
    if customer.status == CustomerStatus.ERASED:
        return customer
    # The person erasing themselves acts under a pseudonym from here on (the forfeited credit, the audit trail).
    actor = (
        principal
        if principal.is_ops
        else Principal(sub=pseudonym(ctx.settings.identity_key, principal.sub), role="customer")
    )
    await end_everything(conn, ctx, actor, customer.id, now, EndedReason.ERASED, None)
    identifiers = [customer.name, customer.email, customer.external_id]
    await repository.update_fields(conn, customer.id, {**ERASED_FIELDS, "updated_at": now})
    await erasure.skip_notices(conn, customer.id, ERASED)
    for kind in ("refunds", "credits"):
        await _redact_reasons(uow, kind, customer.id, identifiers)
    await _scrub_stored_responses(uow, customer.id, identifiers)
    await erasure.empty_webhook_payloads(conn, customer.id, customer.gateway_customer_id)
    if customer.external_id:
        await erasure.forget_keys_of(conn, f"customer:{customer.external_id}")
        alias = pseudonym(ctx.settings.identity_key, customer.external_id)
        await erasure.pseudonymise_audit(conn, customer.id, customer.external_id, alias, ERASED)
    await _scrub_events(uow, customer.id, identifiers)
    erased = changed(customer, **ERASED_FIELDS, updated_at=now)
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
            ("access.changed", access_document(access(AccessFacts(customer_status=CustomerStatus.ERASED), now))),
        ],
    )
    return await repository.get(conn, customer.id)


async def _redact_reasons(
    uow: UnitOfWork, kind: ReasonKind, customer_id: str, identifiers: Sequence[str | None]
) -> None:
    """D3: staff's free text about the person keeps its sense, not the person (policies.redact): one read of the
    customer's rows, one statement for those that named them. Any e-mail address in the customer's own records is
    taken as theirs (perhaps one corrected since, D2, which the service no longer holds) and goes too."""
    rows = await erasure.reasons(uow.conn, kind, customer_id)
    await erasure.set_reasons(
        uow.conn,
        kind,
        [
            (row.id, redacted)
            for row in rows
            if (redacted := redact(row.reason, identifiers, every_email=True)) != row.reason
        ],
    )


async def _scrub_events(uow: UnitOfWork, customer_id: str, identifiers: Sequence[str | None]) -> None:
    """D3: the customer's domain events keep what happened, not who it happened to (policies.erase_from_response,
    as for stored responses): the customer's personal fields in their snapshots are emptied, the identifiers (and
    any e-mail address) in free text replaced; ids, codes, statuses and timestamps exactly as they were (one read,
    one statement for the events that changed)."""
    rows = await erasure.event_data(uow.conn, customer_id)
    await erasure.set_event_data(
        uow.conn,
        [
            (row.id, data)
            for row in rows
            if (data := erase_from_response(row.data, customer_id, identifiers, every_email=True)) != row.data
        ],
    )


async def _scrub_stored_responses(uow: UnitOfWork, customer_id: str, identifiers: Sequence[str | None]) -> None:
    """D3: a stored idempotent response that shows the customer (found by their id, which every object of theirs
    carries, whoever the caller) is kept, so a retry still replays instead of acting twice, but shows them as
    erased (policies.erase_from_response): the Customer object's personal fields emptied, the identifiers (and any
    e-mail address) in free text replaced; ids, codes, statuses and timestamps exactly as they were."""
    changes = []
    for row in await erasure.responses_mentioning(uow.conn, customer_id):
        try:
            body = dumps(
                erase_from_response(orjson.loads(row.response_body), customer_id, identifiers, every_email=True)
            )
        except orjson.JSONDecodeError:
            text_body = row.response_body.decode("utf-8", "replace")
            body = (redact(text_body, identifiers, every_email=True) or "").encode()
        if body != row.response_body:
            changes.append((row.caller, row.key, body))
    await erasure.set_responses(uow.conn, changes)
