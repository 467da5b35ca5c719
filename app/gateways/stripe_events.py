"""Verifying Stripe's webhook signatures with the official library (`stripe.WebhookSignature.verify_header`)."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

import stripe

TOLERANCE_SECONDS = 300


class BadSignature(Exception):
    pass


def _timestamp(header: str) -> int:
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            return int(value)
    raise BadSignature("no timestamp in the Stripe-Signature header")


def verify_event(payload: bytes, header: str | None, secret: str, wall: _dt.datetime) -> dict[str, Any]:
    """The event, if the signature is Stripe's, made with `secret`, and dated within 300 s of now either way
    (Stripe's check refuses old timestamps; we also refuse ones far in the future).

    The signature is checked by the official library (`stripe.WebhookSignature.verify_header`, what
    `stripe.Webhook.construct_event` runs first); the payload is then parsed once, into plain dicts and lists
    (`construct_event` would parse it, then build a tree of StripeObjects that we would only turn back into
    dicts)."""
    if not secret:
        raise BadSignature("no webhook secret is configured (BILLING_STRIPE_WEBHOOK_SECRET)")
    if not header:
        raise BadSignature("missing Stripe-Signature header")
    if _timestamp(header) > wall.timestamp() + TOLERANCE_SECONDS:
        raise BadSignature("the signature's timestamp is in the future")
    try:
        text = payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload
        stripe.WebhookSignature.verify_header(text, header, secret, tolerance=TOLERANCE_SECONDS)
        event = json.loads(text)
    except stripe.SignatureVerificationError as exc:
        raise BadSignature(str(exc)) from None
    except ValueError as exc:  # not UTF-8, or not JSON
        raise BadSignature(f"invalid payload: {exc}") from None
    if not isinstance(event, dict):
        raise BadSignature("invalid payload: the event is not a JSON object")
    if event.get("object") == "v2.core.event":  # refused by `construct_event` too: a thin event has no snapshot
        raise BadSignature("invalid payload: a thin event notification, not a snapshot event")
    return event
