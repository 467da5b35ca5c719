"""Verifying Stripe's webhook signatures with the official library (`stripe.Webhook.construct_event`)."""

from __future__ import annotations

import datetime as _dt
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
    (Stripe's check refuses old timestamps; we also refuse ones far in the future)."""
    if not secret:
        raise BadSignature("no webhook secret is configured (BILLING_STRIPE_WEBHOOK_SECRET)")
    if not header:
        raise BadSignature("missing Stripe-Signature header")
    if _timestamp(header) > wall.timestamp() + TOLERANCE_SECONDS:
        raise BadSignature("the signature's timestamp is in the future")
    try:
        event = stripe.Webhook.construct_event(payload, header, secret, tolerance=TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError as exc:
        raise BadSignature(str(exc)) from None
    except ValueError as exc:  # the payload is not JSON
        raise BadSignature(f"invalid payload: {exc}") from None
    return event.to_dict() if hasattr(event, "to_dict") else dict(event)
