"""A local, stateful fake of Stripe's API for tests: `localstripe` (PyPI), started from this launcher.

Run as `python -m tests.support.fake_stripe --port N` (tests use `FakeStripe`, below). The launcher serves
localstripe's aiohttp application on 127.0.0.1 only, keeps its store in memory (localstripe's own command line
binds every interface and pickles its store to a fixed file in /tmp), and adds what localstripe leaves out but
Stripe documents and the billing service relies on:

- idempotency: a repeated POST with the same `Idempotency-Key` replays the first response (header
  `Idempotent-Replayed: true`) without doing anything again; the same key with another path or body is a 400
  `idempotency_error`; the same key while the first request still runs is a 409. As at Stripe, a response is kept
  only when the endpoint ran (2xx, 402 card errors, 5xx), not for requests refused by validation;
- refunds: over what is left of the charge -> 400 `invalid_request_error` ("Refund amount ($X) is greater than
  unrefunded amount on charge ($Y)"); a fully refunded charge -> 400 `charge_already_refunded`; a PaymentIntent
  without a successful charge -> 400; no amount -> what is left. After each refund a signed `charge.refunded`
  event goes to the registered webhooks (localstripe's own signing and delivery);
- PaymentIntents accept `description`, `setup_future_usage`, `automatic_payment_methods` and `return_url`; a test
  payment method id (`pm_card_visa`, ...) is turned into a real `pm_...` object as Stripe does, and with
  `setup_future_usage` a successful payment attaches it to the PaymentIntent's customer, so it can be charged
  off-session later; a method attached to another customer is refused;
- test cards: `pm_card_visa_chargeDeclined` / `pm_card_chargeDeclined` (card 4000000000000002) and
  `pm_card_chargeCustomerFail` decline with `card_declined` / `generic_decline`,
  `pm_card_chargeDeclinedInsufficientFunds` with `insufficient_funds`; card errors are 402 `card_error` carrying
  `decline_code`, `charge` and the `payment_intent`, like Stripe's;
- 3-D Secure: `pm_card_authenticationRequired` (card 4000002760003184, which localstripe already treats as
  needing authentication) -> on-session the PaymentIntent is `requires_action` with a `client_secret` (complete
  it with localstripe's `POST /v1/payment_intents/<id>/_authenticate` {client_secret, success}, which then sends
  `payment_intent.succeeded`); off-session it is declined with `authentication_required`, as at Stripe.

Extra control routes: `DELETE /_config/idempotency` (forget kept responses) and `DELETE /_config/webhooks`
(forget registered webhooks and drop the deliveries still waiting), besides localstripe's `DELETE /_config/data`
and `POST /_config/webhooks/<id>`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from tests.support.processes import ServerProcess, free_port, when_ready

API_KEY = "sk_test_fake_stripe"  # localstripe accepts any key that starts with sk_
ROOT = Path(__file__).resolve().parents[2]

# Stripe's test payment method ids that localstripe does not know, with Stripe's card numbers for them.
EXTRA_TEST_METHODS = {
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_authenticationRequired": "4000002760003184",
}
# Card number -> decline code when charged (localstripe declines only 4000000000000341 and two 3-D Secure cards).
DECLINE_CODES = {
    "4000000000000002": "generic_decline",
    "4000000000000341": "generic_decline",
    "4000000000009995": "insufficient_funds",
    "4000008260003178": "insufficient_funds",
    "4000008400001629": "card_declined",
}
DECLINE_MESSAGES = {
    "insufficient_funds": "Your card has insufficient funds.",
}


def _money(minor: int) -> str:
    return f"${minor / 100:.2f}"


def build_app():
    """localstripe's application, patched as described in the module docstring."""
    from aiohttp import web
    from localstripe import resources, server, webhooks
    from localstripe.errors import UserError
    from localstripe.resources import Charge, Event, Invoice, PaymentIntent, PaymentMethod, Refund, Store

    # -- no disk: localstripe pickles its whole store to /tmp/localstripe.pickle after every change.
    Store.dump_to_disk = lambda self: None
    Store.try_load_from_disk = lambda self: None

    # -- webhook deliveries (localstripe sends each event about a second after it): kept track of, so that a reset
    # drops those still waiting instead of delivering a previous test's events to the next test's endpoint.
    deliveries: set[asyncio.Task] = set()

    def schedule_webhook(event) -> None:
        task = asyncio.ensure_future(webhooks._send_webhook(event))
        deliveries.add(task)
        task.add_done_callback(deliveries.discard)

    webhooks.schedule_webhook = resources.schedule_webhook = schedule_webhook

    def drop_deliveries() -> None:
        for task in list(deliveries):
            task.cancel()

    def card_error(message: str, **contents) -> UserError:
        err = UserError(402, message, {k: v for k, v in contents.items() if v is not None})
        err.body["error"]["type"] = "card_error"
        return err

    def invalid(message: str, status: int = 400, **contents) -> UserError:
        return UserError(status, message, {k: v for k, v in contents.items() if v is not None})

    # -- test payment methods and declines
    original_canonical = PaymentMethod._try_get_canonical_test_article.__func__

    @classmethod
    def canonical(cls, id):
        if id in EXTRA_TEST_METHODS:
            return PaymentMethod(
                type="card",
                card={"number": EXTRA_TEST_METHODS[id], "exp_month": "12", "exp_year": "2034", "cvc": "123"},
            )
        return original_canonical(cls, id)

    PaymentMethod._try_get_canonical_test_article = canonical

    original_declined = PaymentMethod._charging_is_declined

    def charging_is_declined(self) -> bool:
        return original_declined(self) or (self.type == "card" and self._card_number in DECLINE_CODES)

    PaymentMethod._charging_is_declined = charging_is_declined

    def set_auth_failure(self) -> None:
        pm = PaymentMethod._api_retrieve(self.payment_method)
        self._decline_code = DECLINE_CODES.get(getattr(pm, "_card_number", ""), "generic_decline")
        self.status = "failed"
        self.failure_code = "card_declined"
        self.failure_message = DECLINE_MESSAGES.get(self._decline_code, "Your card was declined.")

    Charge._set_auth_failure = set_auth_failure

    original_last_error = PaymentIntent.last_payment_error.fget

    def last_payment_error(self):
        error = original_last_error(self)
        if error and self.latest_charge is not None and getattr(self.latest_charge, "_decline_code", None):
            error = {**error, "type": "card_error", "decline_code": self.latest_charge._decline_code}
        return error

    PaymentIntent.last_payment_error = property(last_payment_error)

    def report_failure(self) -> None:
        schedule_webhook(Event("payment_intent.payment_failed", self))
        if self.invoice:
            Invoice._api_retrieve(self.invoice)._on_payment_failure_now()
        charge = self.latest_charge
        raise card_error(
            charge.failure_message,
            code=charge.failure_code,
            decline_code=getattr(charge, "_decline_code", None),
            charge=charge.id,
            payment_intent=self._export(),
            payment_method={"id": charge.payment_method},
        )

    PaymentIntent._report_failure = report_failure

    original_on_success = PaymentIntent._on_success

    def on_success(self) -> None:
        # setup_future_usage: the method is saved on the customer for later (off-session) payments.
        if getattr(self, "setup_future_usage", None) and self.customer:
            PaymentMethod._api_retrieve(self.payment_method).customer = self.customer
        original_on_success(self)

    PaymentIntent._on_success = on_success

    original_pi_create = PaymentIntent._api_create.__func__

    @classmethod
    def pi_create(
        cls,
        confirm=None,
        off_session=None,
        description=None,
        setup_future_usage=None,
        automatic_payment_methods=None,
        return_url=None,
        **data,
    ):
        confirm = resources.try_convert_to_bool(confirm)
        off_session = resources.try_convert_to_bool(off_session)
        if setup_future_usage not in (None, "", "on_session", "off_session"):
            raise invalid("Invalid setup_future_usage", param="setup_future_usage")
        if off_session is not None and confirm is not True:
            raise invalid("off_session can only be used with confirm=true", param="off_session")
        method_id = data.get("payment_method")
        if isinstance(method_id, str) and method_id:
            try:
                method = PaymentMethod._api_retrieve(method_id)  # a test id becomes a real pm_ object
            except UserError:
                raise invalid(
                    f"No such PaymentMethod: '{method_id}'", 400, code="resource_missing", param="payment_method"
                ) from None
            data["payment_method"] = method.id
            customer = data.get("customer")
            if method.customer and customer and method.customer != customer:
                raise invalid(
                    f"The customer does not have a payment method with the ID {method.id}. The payment "
                    "method must be attached to the customer.",
                    param="payment_method",
                )
        intent = original_pi_create(cls, **data)  # created, not confirmed
        intent.description = description
        intent.setup_future_usage = setup_future_usage or None
        if confirm:
            method = PaymentMethod._api_retrieve(intent.payment_method) if intent.payment_method else None
            if method is None:
                raise invalid(
                    "You cannot confirm this PaymentIntent because it's missing a payment method.",
                    code="payment_intent_unexpected_state",
                )
            if off_session and method._requires_authentication():
                # Stripe declines off-session payments that need 3-D Secure; the customer must come back.
                charge = Charge(
                    amount=intent.amount, currency=intent.currency, customer=intent.customer, source=method.id
                )
                charge.payment_intent = intent.id
                charge.status = "failed"
                charge.failure_code = "authentication_required"
                charge.failure_message = "Your card was declined. This transaction requires authentication."
                charge._decline_code = "authentication_required"
                intent.latest_charge = charge
                intent._report_failure()
            intent._confirm(on_failure_now=intent._report_failure)
        return intent

    PaymentIntent._api_create = pi_create

    # -- refunds: never more than what is left; `charge.refunded` after each one
    original_refund_create = Refund._api_create.__func__

    @classmethod
    def refund_create(cls, **data):
        charge_id = data.get("charge")
        intent_id = data.get("payment_intent")
        if intent_id is not None and charge_id is None:
            intent = PaymentIntent._api_retrieve(intent_id) if isinstance(intent_id, str) else None
            if intent is None or intent.latest_charge is None or intent.latest_charge.status != "succeeded":
                raise invalid(
                    f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                    code="charge_not_refundable" if intent is not None else None,
                )
            charge = intent.latest_charge
        elif isinstance(charge_id, str):
            charge = Charge._api_retrieve(charge_id)
        else:
            return original_refund_create(cls, **data)  # localstripe's own 400
        left = charge.amount - charge.amount_refunded
        amount = resources.try_convert_to_int(data.get("amount"))
        if amount is None:
            amount = left
        if isinstance(amount, int):
            if left <= 0:
                raise invalid(f"Charge {charge.id} has already been refunded.", code="charge_already_refunded")
            if amount > left:
                raise invalid(
                    f"Refund amount ({_money(amount)}) is greater than unrefunded amount on charge ({_money(left)})",
                    param="amount",
                )
            data["amount"] = amount
        refund = original_refund_create(cls, **data)
        schedule_webhook(Event("charge.refunded", charge))
        return refund

    Refund._api_create = refund_create

    # -- idempotency (an outer middleware: it sees localstripe's final responses, errors included)
    kept: dict[tuple[str, str], tuple[str, str, int, bytes, str]] = {}
    running: set[tuple[str, str]] = set()

    def idempotency_error(message: str, status: int = 400):
        return server.json_response({"error": {"type": "idempotency_error", "message": message}}, status=status)

    @web.middleware
    async def idempotency_middleware(request, handler):
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key or request.path.startswith("/_config/"):
            return await handler(request)
        body = await request.read()  # aiohttp keeps it for the handler
        slot = (request.headers.get("Authorization", ""), key)
        fingerprint = hashlib.sha256(body).hexdigest()
        if slot in kept:
            path, first_fingerprint, status, payload, content_type = kept[slot]
            if (path, first_fingerprint) != (request.path, fingerprint):
                return idempotency_error(
                    "Keys for idempotent requests can only be used with the same parameters they were first used "
                    f"with. Try using a key other than '{key}' if you meant to execute a different request."
                )
            return web.Response(
                status=status,
                body=payload,
                content_type=content_type,
                headers={"Idempotent-Replayed": "true", "Idempotency-Key": key},
            )
        if slot in running:
            return server.json_response(
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "idempotency_key_in_use",
                        "message": "There is currently another in-progress request using this Idempotent Key (that "
                        "probably means you submitted twice, and the other request is still going through): "
                        f"{key}. Please try again later.",
                    }
                },
                status=409,
            )
        running.add(slot)
        try:
            response = await handler(request)
        finally:
            running.discard(slot)
        if 200 <= response.status < 300 or response.status == 402 or response.status >= 500:
            kept[slot] = (request.path, fingerprint, response.status, response.body, response.content_type)
        response.headers["Idempotency-Key"] = key
        return response

    async def forget_idempotency(request):
        kept.clear()
        return web.Response()

    async def forget_webhooks(request):
        drop_deliveries()
        webhooks._webhooks.clear()
        return web.Response()

    app = server.app
    app.middlewares.insert(0, idempotency_middleware)
    app.router.add_delete("/_config/idempotency", forget_idempotency)
    app.router.add_delete("/_config/webhooks", forget_webhooks)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    from aiohttp import web

    web.run_app(build_app(), host="127.0.0.1", port=args.port, print=None, access_log=None, shutdown_timeout=1)


# --------------------------------------------------------------------------------------------------------------
# The pytest side


class FakeStripe:
    """The launcher above as a subprocess on a free 127.0.0.1 port.

    `url` is what `StripeGateway(api_key, api_base=fake.url)` takes; `api_key` is a key it accepts. `reset()` empties
    it (objects, kept idempotent responses and registered webhooks); `register_webhook(url, secret)` makes it send
    signed events (`payment_intent.succeeded`, `payment_intent.payment_failed`, `charge.refunded`, ...) to `url`,
    about one second after the change. `get(path, **params)`/`post(path, **data)` call its API with the key.
    """

    api_key = API_KEY

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self._log = None
        self._webhook_count = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> FakeStripe:
        # Its log goes to a temporary file (a pipe nobody reads could fill up and stall it); see `log()`.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - the child writes to it as long as it runs; log() reads it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fake_stripe", "--port", str(self.port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            when_ready(ServerProcess(self.port, self.process, "fake Stripe"), timeout, lambda _: self._answers())
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}{self.log()[-2000:]}") from None
        return self

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/v1/customers", auth=(self.api_key, ""), timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            ServerProcess(self.port, self.process, "fake Stripe").stop(timeout=10)
        self.process = None

    def log(self) -> str:
        """What the fake has written so far (errors of its handlers, tracebacks)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def reset(self) -> None:
        for path in ("/_config/data", "/_config/idempotency", "/_config/webhooks"):
            httpx.delete(self.url + path, timeout=5).raise_for_status()

    def register_webhook(self, url: str, secret: str, events: list[str] | None = None) -> None:
        self._webhook_count += 1
        data = {"url": url, "secret": secret}
        if events is not None:
            data.update({f"events[{i}]": e for i, e in enumerate(events)})
        httpx.post(f"{self.url}/_config/webhooks/wh_{self._webhook_count}", data=data, timeout=5).raise_for_status()

    def get(self, path: str, **params) -> dict:
        response = httpx.get(self.url + path, params=params, auth=(self.api_key, ""), timeout=5)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, **data) -> dict:
        response = httpx.post(self.url + path, data=data, auth=(self.api_key, ""), timeout=5)
        response.raise_for_status()
        return response.json()

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    main()
