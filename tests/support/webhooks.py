"""Stripe-style webhook events for tests: built from Stripe's published example objects and signed as Stripe signs
them, so the service's real verification (`stripe.Webhook.construct_event`) checks them.

The templates below are copies of the `event` and `payment_intent` objects of Stripe's OpenAPI fixtures
(`openapi/fixtures3.json` in stripe/openapi, MIT licence; kept in this project's shared material as
`shared/stripe/fixtures.json`), so that payloads carry every field real ones do. Tests set `id`, `status`,
`amount`, ... on a copy, wrap it in an event and sign it.

Signature (Stripe's scheme v1): header `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
f"{t}.{payload}" keyed with the endpoint secret>`. The service checks `t` against the real (wall) time, not the
sandbox clock, so timestamps here are real time too.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

EVENT_TEMPLATE: dict[str, Any] = {
    "api_version": None,
    "created": 1234567890,
    "data": {"object": None},
    "id": "evt_1Pgc76B7WZ01zgkWwyRHS12y",
    "livemode": False,
    "object": "event",
    "pending_webhooks": 0,
    "request": {"id": None, "idempotency_key": None},
    "type": "plan.created",
}

PAYMENT_INTENT_TEMPLATE: dict[str, Any] = {
    "amount": 1099,
    "amount_capturable": 0,
    "amount_details": {"tip": {}},
    "amount_received": 0,
    "application": None,
    "application_fee_amount": None,
    "automatic_payment_methods": {"enabled": True},
    "canceled_at": 1234567890,
    "cancellation_reason": None,
    "capture_method": "automatic",
    "client_secret": "pi_1PgafyB7WZ01zgkWSjxsAJo3_secret_Dm43xiq1k0ywrRRjDoi8y1gkM",
    "confirmation_method": "automatic",
    "created": 1234567890,
    "currency": "usd",
    "customer": None,
    "customer_account": None,
    "description": None,
    "excluded_payment_method_types": None,
    "id": "pi_1PgafyB7WZ01zgkWSjxsAJo3",
    "last_payment_error": {"type": "idempotency_error"},
    "latest_charge": None,
    "livemode": False,
    "managed_payments": {"enabled": True},
    "metadata": {},
    "next_action": {"type": "type"},
    "object": "payment_intent",
    "on_behalf_of": None,
    "payment_method": None,
    "payment_method_configuration_details": {"id": "obj_123", "parent": None},
    "payment_method_options": {},
    "payment_method_types": ["card"],
    "processing": {"type": "card"},
    "receipt_email": None,
    "review": None,
    "setup_future_usage": None,
    "shipping": {},
    "source": None,
    "statement_descriptor": None,
    "statement_descriptor_suffix": None,
    "status": "requires_payment_method",
    "transfer_data": {"destination": {"id": "obj_123", "object": "account"}},
    "transfer_group": None,
}


def signature(payload: str | bytes, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header value for `payload`, signed with `secret` at `timestamp` (default: now)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    text = payload.decode() if isinstance(payload, bytes) else payload
    digest = hmac.new(secret.encode(), f"{t}.{text}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def payment_intent(
    intent_id: str,
    *,
    status: str,
    amount: int = 1099,
    currency: str = "usd",
    metadata: dict | None = None,
    decline_code: str | None = None,
) -> dict[str, Any]:
    """A PaymentIntent shaped like Stripe's, in `status` (succeeded: amount received, no error; requires_payment_method
    after a failure: `last_payment_error` carries the decline code)."""
    intent = copy.deepcopy(PAYMENT_INTENT_TEMPLATE)
    intent.update(
        id=intent_id,
        status=status,
        amount=amount,
        currency=currency,
        metadata=metadata or {},
        client_secret=f"{intent_id}_secret_test",
        created=int(time.time()),
        canceled_at=None,
        next_action=None,
        processing=None,
        payment_method="pm_card_visa",
    )
    if status == "succeeded":
        intent.update(amount_received=amount, last_payment_error=None, latest_charge=f"ch_{intent_id[3:]}")
    else:
        intent.update(
            amount_received=0,
            last_payment_error={
                "type": "card_error",
                "code": "card_declined",
                "decline_code": decline_code or "generic_decline",
                "message": "Your card was declined.",
            },
        )
    return intent


def event(event_type: str, obj: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """An Event envelope around `obj`, with a fresh id unless one is given."""
    envelope = copy.deepcopy(EVENT_TEMPLATE)
    envelope.update(
        id=event_id or f"evt_test_{uuid.uuid4().hex[:24]}",
        type=event_type,
        created=int(time.time()),
        data={"object": obj},
    )
    return envelope


def intent_event(event_type: str, intent_id: str, *, event_id: str | None = None, **intent: Any) -> dict[str, Any]:
    """`payment_intent.succeeded` / `payment_intent.payment_failed` for PaymentIntent `intent_id`."""
    status = "succeeded" if event_type == "payment_intent.succeeded" else "requires_payment_method"
    return event(
        event_type, payment_intent(intent_id, status=intent.pop("status", status), **intent), event_id=event_id
    )


def post_event(client, evt: dict[str, Any], secret: str, *, timestamp: int | None = None, header: str | None = None):
    """POST the event to the webhook endpoint, signed with `secret` at `timestamp` (default: now)."""
    payload = json.dumps(evt, separators=(",", ":"))
    sig = header if header is not None else signature(payload, secret, timestamp)
    return client.post(
        "/v1/webhooks/stripe",
        content=payload.encode(),
        headers={"Stripe-Signature": sig, "Content-Type": "application/json"},
    )
