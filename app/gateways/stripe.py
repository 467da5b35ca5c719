"""The Stripe gateway: PaymentIntents and Refunds through Stripe's own client (`stripe.StripeClient`, async API over
its httpx client), and the check of a webhook's signature (`verify_signature`, for app/gateways/stripe_events.py).
The only module of the service that imports `stripe`.

- Only payment method ids (`pm_...`) pass through here, never card data.
- Every write carries an idempotency key (ours, derived from our ids), so a call repeated after a crash or a
  time-out returns Stripe's first result instead of charging or refunding twice.
- Network errors, rate limits, conflicts and 5xx are retried by the client itself (`max_network_retries`, with its
  bounded exponential back-off, under the same idempotency key); what still fails is `GatewayUnavailable`.
- A declined card is a `failed` result, never an exception; any other refusal is `GatewayError`. Nothing unknown
  is ever taken for a success.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal, cast

import stripe
from stripe.params import PaymentIntentCreateParams

from app.gateways.base import (
    ChargeOutcome,
    ChargeRequest,
    ChargeResult,
    GatewayError,
    GatewayUnavailable,
    RefundResult,
    charge_each,
)

log = logging.getLogger(__name__)

# The metadata we send with our writes, echoed in Stripe's events (app/gateways/stripe_events.py reads them back).
KEY_METADATA = "idempotency_key"  # a PaymentIntent's: the idempotency key we created it with
REFUND_METADATA = "billing_refund_id"  # a refund's: our refund id
SignatureVerificationError = stripe.SignatureVerificationError


def verify_signature(payload: str, header: str, secret: str, tolerance: int) -> None:
    """Stripe's own check of a webhook's `Stripe-Signature` header (what `stripe.Webhook.construct_event` runs
    first): `SignatureVerificationError` unless the payload was signed with `secret` within `tolerance` seconds."""
    stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=tolerance)


# PaymentIntent statuses after a create-and-confirm that mean the customer has something to do (3-D Secure, or
# another payment method on the page they are on). `processing` cannot happen for cards; it ends through a webhook.
_NEEDS_CUSTOMER = frozenset({"requires_action", "requires_confirmation", "processing"})
_REFUND_STATUS: dict[str, Literal["succeeded", "pending", "failed"]] = {
    "succeeded": "succeeded",
    "pending": "pending",
    "requires_action": "pending",
    "failed": "failed",
    "canceled": "failed",
}


def _get(obj: Any, key: str) -> Any:
    """A field of a Stripe object (or dict), None when absent."""
    if obj is None:
        return None
    try:
        return obj.get(key) if hasattr(obj, "get") else getattr(obj, key, None)
    except (AttributeError, KeyError):
        return None


class _HTTPXClient(stripe.HTTPXClient):
    """Stripe's httpx client, passing the encoded form as `content` (httpx deprecates raw bytes/text as `data`)."""

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Any, post_data: Any
    ) -> tuple[Any, dict[str, Any]]:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        if isinstance(kwargs.get("data"), (str, bytes)):
            kwargs["content"] = kwargs.pop("data")
        return args, kwargs


class StripeGateway:
    name = "stripe"

    def __init__(
        self, api_key: str, api_base: str | None = None, *, max_network_retries: int = 2, timeout: float = 20.0
    ) -> None:
        if not api_key:
            raise ValueError("a Stripe API key is required")
        self._api_key = api_key
        self._api_base = api_base.rstrip("/") if api_base else None
        self._max_network_retries = max_network_retries
        self._timeout = timeout
        self._client: stripe.StripeClient | None = None
        self._http: _HTTPXClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the client: one per event loop (httpx's pooled connections belong to the loop that opened them)

    def _stripe(self) -> stripe.StripeClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._http = _HTTPXClient(timeout=self._timeout)  # async only: never blocks the loop
            self._client = stripe.StripeClient(
                self._api_key,
                base_addresses={"api": self._api_base} if self._api_base else None,
                max_network_retries=self._max_network_retries,
                http_client=self._http,
            )
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP connections (at shutdown)."""
        if self._http is not None and self._loop is asyncio.get_running_loop():
            await self._http.close_async()
        self._client = self._http = self._loop = None

    # -- the PaymentGateway protocol

    async def create_customer(self, customer_id: str) -> str:
        try:
            customer = await self._stripe().v1.customers.create_async(
                {"metadata": {"billing_customer_id": customer_id}},
                {"idempotency_key": f"customer-{customer_id}"},
            )
        except stripe.StripeError as err:
            raise _translate(err, "create a customer") from err
        return customer.id

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        if not request.payment_method.startswith("pm_"):
            # Only payment method ids are accepted (what Stripe.js gives the frontend): never card data.
            return ChargeResult(
                status="failed", payment_id="", decline_code="invalid_payment_method", message="Unknown payment method."
            )
        params: dict[str, Any] = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "payment_method": request.payment_method,
            "confirm": True,
            "payment_method_types": ["card"],  # no redirect-based methods, so no return_url is needed
            "description": request.description,
            "metadata": {"billing_customer_id": request.customer_id, KEY_METADATA: request.idempotency_key},
        }
        if request.gateway_customer:
            params["customer"] = request.gateway_customer
        if request.off_session:
            params["off_session"] = True  # renewals and retries: the customer is not there to authenticate
        else:
            params["setup_future_usage"] = "off_session"  # keep the method on the customer for the renewals
        try:
            intent = await self._stripe().v1.payment_intents.create_async(
                # stripe's TypedDict omits `payment_method_types`, which its API takes
                cast("PaymentIntentCreateParams", params),
                {"idempotency_key": request.idempotency_key},
            )
        except stripe.CardError as err:
            return _declined(err)
        except stripe.StripeError as err:
            raise _translate(err, "charge") from err
        return _charge_result(intent, off_session=request.off_session)

    async def charge_many(self, requests: Sequence[ChargeRequest]) -> list[ChargeOutcome]:
        """One PaymentIntent per request (Stripe has no batch call), a few in flight at once."""
        return await charge_each(self.charge, requests)

    async def refund(self, payment_id: str, amount: int, idempotency_key: str) -> RefundResult:
        try:
            refund = await self._stripe().v1.refunds.create_async(
                # Our refund id in the metadata lets the `charge.refunded` webhook tell our refunds from ones
                # made in Stripe's dashboard.
                {"payment_intent": payment_id, "amount": amount, "metadata": {REFUND_METADATA: idempotency_key}},
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as err:
            raise _translate(err, "refund") from err
        status = _REFUND_STATUS.get(refund.status or "")
        if status is None:
            raise GatewayError(f"Stripe answered refund {refund.id} with an unknown status {refund.status!r}")
        return RefundResult(refund_id=refund.id, status=status)

    async def cancel_payment(self, payment_id: str, idempotency_key: str) -> Literal["canceled", "succeeded"]:
        """B1: `POST /v1/payment_intents/{id}/cancel` under our key. Stripe refuses to cancel an
        intent that is canceled or succeeded already (`payment_intent_unexpected_state`): the intent is then read
        to tell which. One still `processing` has no outcome yet: tried again later."""
        client = self._stripe()
        try:
            intent = await client.v1.payment_intents.cancel_async(
                payment_id, None, {"idempotency_key": idempotency_key}
            )
        except stripe.InvalidRequestError as refused:
            try:
                intent = await client.v1.payment_intents.retrieve_async(payment_id)
            except stripe.StripeError as err:
                raise _translate(err, "read a PaymentIntent") from err
            if intent.status not in ("canceled", "succeeded", "processing"):
                raise _translate(refused, "cancel a PaymentIntent") from refused
        except stripe.StripeError as err:
            raise _translate(err, "cancel a PaymentIntent") from err
        if intent.status in ("canceled", "succeeded"):
            return "canceled" if intent.status == "canceled" else "succeeded"
        if intent.status == "processing":
            raise GatewayUnavailable(f"PaymentIntent {payment_id} is still processing; its cancellation waits")
        raise GatewayError(
            f"Stripe answered the cancellation of PaymentIntent {payment_id} with status {intent.status!r}"
        )

    async def complete_action(self, payment_intent_id: str) -> None:
        """Nothing to do: Stripe keeps its own books, and the signed `payment_intent.succeeded` that reports the
        completed action came from them."""

    async def events_since(self, created_gte: int) -> AsyncIterator[dict[str, Any]]:
        """Every event created at or after `created_gte` (unix seconds), oldest first, for replay after an outage."""
        try:
            page = await self._stripe().v1.events.list_async({"created": {"gte": created_gte}, "limit": 100})
            events = [e.to_dict() for e in page.data]
            while page.has_more:
                page = await self._stripe().v1.events.list_async(
                    {"created": {"gte": created_gte}, "limit": 100, "starting_after": page.data[-1].id}
                )
                events.extend(e.to_dict() for e in page.data)
        except stripe.StripeError as err:
            raise _translate(err, "list events") from err
        for event in sorted(events, key=lambda e: (e.get("created") or 0, e.get("id") or "")):
            yield event


def _charge_result(intent: Any, *, off_session: bool) -> ChargeResult:
    status = intent.status
    if status == "succeeded":
        return ChargeResult(status="succeeded", payment_id=intent.id)
    if status == "requires_payment_method":
        error = _get(intent, "last_payment_error")
        if error is None and not off_session:
            # Confirmed but not payable as it stands: the customer can finish it on the page with the client secret.
            return ChargeResult(status="requires_action", payment_id=intent.id, client_secret=intent.client_secret)
        return ChargeResult(
            status="failed",
            payment_id=intent.id,
            decline_code=_get(error, "decline_code") or _get(error, "code") or "payment_failed",
            message=_get(error, "message") or "The payment failed.",
        )
    if status in _NEEDS_CUSTOMER:
        return ChargeResult(status="requires_action", payment_id=intent.id, client_secret=intent.client_secret)
    if status == "canceled":
        return ChargeResult(
            status="failed", payment_id=intent.id, decline_code="canceled", message="The payment was canceled."
        )
    # e.g. requires_capture: we never ask for manual capture, so this is not a state we can account for.
    raise GatewayError(f"Stripe answered PaymentIntent {intent.id} with an unexpected status {status!r}")


def _declined(err: stripe.CardError) -> ChargeResult:
    error = err.error
    intent = _get(error, "payment_intent")
    decline_code = getattr(err, "decline_code", None) or _get(error, "decline_code") or err.code or "card_declined"
    return ChargeResult(
        status="failed",
        payment_id=_get(intent, "id") or "",
        decline_code=decline_code,
        message=err.user_message or str(err),
    )


def _translate(err: stripe.StripeError, action: str) -> Exception:
    """A Stripe error that is not a decline, as the service's error (a card error outside `charge` included)."""
    message = err.user_message or str(err)
    # A 409 is Stripe's answer to a request whose key is still in flight elsewhere (a repeat racing the first): no
    # answer yet, so it is tried again later with the same key, never taken as a refusal. (The same key with other
    # parameters is a 400 idempotency_error: a refusal.)
    if isinstance(err, (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError)) or (
        isinstance(err, stripe.IdempotencyError) and err.http_status == 409
    ):
        log.warning("stripe unavailable (%s): %s", action, message)
        return GatewayUnavailable(f"Stripe could not be reached to {action}: {message}")
    log.warning("stripe refused to %s: %s (%s)", action, message, type(err).__name__)
    return GatewayError(message)
