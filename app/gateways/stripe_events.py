"""Stripe's webhook events: the signature checked with the official library (`stripe.WebhookSignature.verify_header`,
called in app/gateways/stripe.py), then the payload parsed and its shape validated into a frozen `StripeEvent`,
before anything acts on it. Stripe's wire format ends here: what an event reports is handed on as a
gateway-neutral fact (app/gateways/base.py: `PaymentSucceeded`, `RefundsReported`...).

A signed event that can never be processed (not JSON, nested absurdly deep, an id that is not a usable string, a
`data.object` that is not an object, or an object of a type we act on with fields of the wrong type or impossible
amounts) is `InvalidEvent`: 400 `invalid_event`, nothing changes. An event that is merely unknown (a type we do not
act on) passes, to be stored and acknowledged; its object is held to the envelope's rules only."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from app.errors import InvalidEvent
from app.gateways.base import (
    DisputeOpened,
    GatewayFact,
    PaymentFailed,
    PaymentSucceeded,
    RefundMade,
    RefundsReported,
)
from app.gateways.stripe import KEY_METADATA, REFUND_METADATA, SignatureVerificationError, verify_signature

TOLERANCE_SECONDS = 300
# Stripe's objects nest about ten levels deep (event > data > object > refunds > data > [i] > metadata); the limit
# keeps a hostile payload away from recursion in the JSON encoder that stores it.
MAX_DEPTH = 64
MAX_AMOUNT = 10**12  # as app.schemas.Amount

_NO_CONTROLS = r"^[^\x00-\x1f\x7f]*$"
# Ids are stored and looked up in VARCHAR(255) columns; no control characters (PostgreSQL refuses NUL in text).
StripeId = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=_NO_CONTROLS)]
EventType = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z0-9_.]+$")]
Code = Annotated[str, StringConstraints(max_length=64, pattern=_NO_CONTROLS)]  # payments.failure_code is 64
Text = Annotated[str, StringConstraints(max_length=5000, pattern=_NO_CONTROLS)]
_NO_NUL = r"^[^\x00]*$"
# Stripe's own limits on metadata; a value may hold any text Stripe accepts (newlines, tabs: a note typed in the
# dashboard), only NUL is refused (PostgreSQL cannot store it). The keys we read are looked up, never trusted.
Metadata = dict[
    Annotated[str, StringConstraints(max_length=40, pattern=_NO_NUL)],
    Annotated[str, StringConstraints(max_length=500, pattern=_NO_NUL)],
]
Amount = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
RefundAmount = Annotated[int, Field(ge=1, le=MAX_AMOUNT)]


class BadSignature(Exception):
    pass


_MADE = ("succeeded", "pending")  # a refund Stripe has made or is making


class _Shape(BaseModel):
    """Strict (no coercion: the handlers read the same values from the event's plain dicts), unknown fields ignored."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class _Object(_Shape):
    """What every object in an event has: an id, when it has one, that can be stored and looked up."""

    id: StripeId | None = None


class PaymentError(_Shape):
    code: Code | None = None
    decline_code: Code | None = None


class PaymentIntent(_Shape):
    id: StripeId
    metadata: Metadata | None = None
    last_payment_error: PaymentError | None = None


class Refund(_Shape):
    id: StripeId
    amount: RefundAmount
    status: Code | None = None
    metadata: Metadata | None = None


class RefundList(_Shape):
    data: list[Refund] = []


class Charge(_Shape):
    id: StripeId
    amount: Amount
    payment_intent: StripeId | None = None
    refunds: RefundList | None = None

    @model_validator(mode="after")
    def _refunds_within_amount(self) -> Charge:
        """R2: Stripe never refunds more than was charged; a charge that says otherwise is not one of Stripe's."""
        listed = sum(r.amount for r in (self.refunds.data if self.refunds else ()) if r.status in _MADE)
        if listed > self.amount:
            raise ValueError(f"the refunds listed ({listed}) exceed the charge's amount ({self.amount})")
        return self


class Dispute(_Shape):
    id: StripeId
    payment_intent: StripeId | None = None
    amount: Amount | None = None
    reason: Text | None = None
    status: Code | None = None


# The objects of the event types we act on (app.webhooks.service.HANDLERS); any other type is held to `_Object`.
OBJECTS: dict[str, type[_Shape]] = {
    "payment_intent.succeeded": PaymentIntent,
    "payment_intent.payment_failed": PaymentIntent,
    "charge.refunded": Charge,
    "charge.dispute.created": Dispute,
}


class _Data(_Shape):
    object: dict[str, Any]


class _Envelope(_Shape):
    id: StripeId
    type: EventType
    data: _Data


@dataclass(frozen=True, slots=True)
class StripeEvent:
    """A signed event whose shape was validated: `fact`, for a type we act on, what it reports in the service's
    terms (None for any other type); `payload` is the whole event, as stored in the inbox."""

    id: str
    type: str
    fact: GatewayFact | None
    object_id: str | None
    payload: dict[str, Any]


def _fact(event_type: str, obj: _Shape) -> GatewayFact | None:
    """What an object of a type we act on reports, in the service's terms."""
    if isinstance(obj, PaymentIntent):
        key = (obj.metadata or {}).get(KEY_METADATA)
        if event_type == "payment_intent.succeeded":
            return PaymentSucceeded(obj.id, key)
        error = obj.last_payment_error
        code = (error.decline_code or error.code if error else None) or "payment_failed"
        return PaymentFailed(obj.id, key, code)
    if isinstance(obj, Charge):
        listed = obj.refunds.data if obj.refunds else []
        made = tuple(
            RefundMade(item.id, item.amount, (item.metadata or {}).get(REFUND_METADATA))
            for item in listed
            if item.status in _MADE
        )
        return RefundsReported(obj.payment_intent or "", made)
    if isinstance(obj, Dispute):
        return DisputeOpened(obj.id, obj.payment_intent or "", obj.amount, obj.reason, obj.status)
    return None


def _timestamp(header: str) -> int:
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            return int(value)
    raise BadSignature("no timestamp in the Stripe-Signature header")


def _depth_within(value: Any, limit: int) -> bool:
    """Whether no container in `value` is nested deeper than `limit` (iterative: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return False
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def _problem(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "event"
    return f"{where}: {first['msg']}"[:300]


def parse_event(event: Any) -> StripeEvent:
    """The event (decoded JSON) validated, or `InvalidEvent` saying what is wrong with it."""
    if not isinstance(event, dict):
        raise InvalidEvent("the event is not a JSON object")
    if not _depth_within(event, MAX_DEPTH):
        raise InvalidEvent(f"the event is nested deeper than {MAX_DEPTH} levels")
    try:
        envelope = _Envelope.model_validate(event)
        shape = OBJECTS.get(envelope.type, _Object)
        obj = shape.model_validate(envelope.data.object)
    except ValidationError as exc:
        raise InvalidEvent(_problem(exc)) from None
    return StripeEvent(
        id=envelope.id,
        type=envelope.type,
        fact=_fact(envelope.type, obj),
        object_id=getattr(obj, "id", None),
        payload=event,
    )


def verify_event(payload: bytes, header: str | None, secret: str, wall: _dt.datetime) -> StripeEvent:
    """The event, if the signature is Stripe's, made with `secret`, and dated within 300 s of now either way
    (Stripe's check refuses old timestamps; we also refuse ones far in the future): `BadSignature` otherwise, and
    `InvalidEvent` for a signed payload of a shape that can never be processed.

    The signature is checked first, by the official library (`stripe.WebhookSignature.verify_header`, what
    `stripe.Webhook.construct_event` runs first); the payload is then parsed once, with orjson, into plain dicts and
    lists (`construct_event` would parse it, then build a tree of StripeObjects that we would only turn back into
    dicts), and validated (`parse_event`)."""
    if not secret:
        raise BadSignature("no webhook secret is configured (BILLING_STRIPE_WEBHOOK_SECRET)")
    if not header:
        raise BadSignature("missing Stripe-Signature header")
    if _timestamp(header) > wall.timestamp() + TOLERANCE_SECONDS:
        raise BadSignature("the signature's timestamp is in the future")
    try:
        text = payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload
        verify_signature(text, header, secret, TOLERANCE_SECONDS)
    except SignatureVerificationError as exc:
        raise BadSignature(str(exc)) from None
    except ValueError as exc:  # not UTF-8
        raise BadSignature(f"invalid payload: {exc}") from None
    try:
        event = orjson.loads(text)  # refuses nesting past 1024 levels with an error, not a RecursionError
    except (orjson.JSONDecodeError, RecursionError) as exc:
        raise InvalidEvent(f"the payload is not valid JSON: {exc}"[:300]) from None
    if isinstance(event, dict) and event.get("object") == "v2.core.event":  # refused by `construct_event` too
        raise BadSignature("invalid payload: a thin event notification, not a snapshot event")
    return parse_event(event)
