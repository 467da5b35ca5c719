"""The Stripe gateway through the real `stripe` library, against the local fake Stripe (localstripe plus the
launcher's additions, tests/support/fake_stripe.py), and against small misbehaving servers for the failure paths.
No network: everything listens on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid

import pytest
import stripe
from aiohttp import web

from app.gateways.base import CONCURRENT_CHARGES, ChargeRequest, GatewayError, GatewayUnavailable, withdrawn_charges
from app.gateways.stripe import StripeGateway
from tests.support.fake_stripe import FakeStripe, free_port

HOOK_WAIT = 10.0  # seconds a test waits for a webhook Stripe sends


@pytest.fixture(scope="session")
def fake_stripe():
    fake = FakeStripe().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake(fake_stripe: FakeStripe) -> FakeStripe:
    fake_stripe.reset()
    return fake_stripe


@pytest.fixture
async def gateway(fake: FakeStripe):
    gw = StripeGateway(fake.api_key, fake.url, max_network_retries=1, timeout=5.0)
    yield gw
    await gw.aclose()


def charge_request(
    customer: str,
    payment_method: str = "pm_card_visa",
    *,
    key: str | None = None,
    off_session: bool = False,
    amount: int = 1999,
) -> ChargeRequest:
    return ChargeRequest(
        amount=amount,
        currency="usd",
        payment_method=payment_method,
        customer_id="cust_1",
        gateway_customer=customer,
        off_session=off_session,
        idempotency_key=key or f"sub_1:period-0:attempt-{uuid.uuid4().hex}",
        description="subscription sub_1",
    )


@contextlib.asynccontextmanager
async def stub_stripe(create_intent, *, max_network_retries: int):
    """A gateway talking to a stand-in for Stripe whose `POST /v1/payment_intents` is `create_intent`."""
    app = web.Application()
    app.router.add_post("/v1/payment_intents", create_intent)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    gateway = StripeGateway(
        "sk_test_x", f"http://127.0.0.1:{port}", max_network_retries=max_network_retries, timeout=2.0
    )
    try:
        yield gateway
    finally:
        await gateway.aclose()
        await runner.cleanup()


class Hooks:
    """A webhook receiver on a loopback port, in the test's event loop."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, str]] = []
        self.arrived = asyncio.Event()
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append((await request.read(), request.headers.get("Stripe-Signature", "")))
        self.arrived.set()
        return web.Response()

    async def __aenter__(self) -> Hooks:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    async def wait_for(self, event_type: str, object_id: str) -> dict:
        deadline = time.monotonic() + HOOK_WAIT
        while True:
            for payload, _ in self.received:
                event = json.loads(payload)
                if event["type"] == event_type and object_id in (
                    event["data"]["object"]["id"],
                    event["data"]["object"].get("payment_intent"),
                ):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {event_type} event; got {[json.loads(p)['type'] for p, _ in self.received]}")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                pass

    def signature_valid(self, event_id: str, secret: str) -> bool:
        for payload, header in self.received:
            if json.loads(payload)["id"] == event_id:
                parts = dict(item.split("=", 1) for item in header.split(","))
                expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + payload, hashlib.sha256).hexdigest()
                return hmac.compare_digest(expected, parts["v1"])
        return False


# -- customers and charges


async def test_create_customer_is_idempotent_per_customer(gateway: StripeGateway, fake: FakeStripe) -> None:
    first = await gateway.create_customer("cust_1")
    again = await gateway.create_customer("cust_1")
    other = await gateway.create_customer("cust_2")
    assert first.startswith("cus_") and first == again and other != first
    assert fake.get(f"/v1/customers/{first}")["metadata"] == {"billing_customer_id": "cust_1"}
    assert len(fake.get("/v1/customers")["data"]) == 2


async def test_on_session_charge_succeeds_and_saves_the_method(gateway: StripeGateway, fake: FakeStripe) -> None:
    customer = await gateway.create_customer("cust_1")
    result = await gateway.charge(charge_request(customer, key="sub_1:period-0:attempt-0"))
    assert result.status == "succeeded" and result.payment_id.startswith("pi_")
    assert result.client_secret is None and result.decline_code is None
    intent = fake.get(f"/v1/payment_intents/{result.payment_id}")
    assert (intent["status"], intent["amount"], intent["currency"], intent["customer"]) == (
        "succeeded",
        1999,
        "usd",
        customer,
    )
    assert intent["description"] == "subscription sub_1"
    assert intent["metadata"] == {"billing_customer_id": "cust_1", "idempotency_key": "sub_1:period-0:attempt-0"}
    assert intent["setup_future_usage"] == "off_session"
    assert fake.get(f"/v1/payment_methods/{intent['payment_method']}")["customer"] == customer


async def test_declined_card_is_a_failed_result_not_an_exception(gateway: StripeGateway, fake: FakeStripe) -> None:
    customer = await gateway.create_customer("cust_1")
    request = charge_request(customer, "pm_card_visa_chargeDeclined")
    result = await gateway.charge(request)
    assert result.status == "failed"
    assert result.payment_id.startswith("pi_")
    assert result.decline_code == "generic_decline"
    assert result.message == "Your card was declined."
    assert fake.get(f"/v1/payment_intents/{result.payment_id}")["status"] == "requires_payment_method"
    assert await gateway.charge(request) == result  # repeated: the same answer, no second attempt
    assert len(fake.get("/v1/charges")["data"]) == 1


async def test_repeated_charge_with_the_same_key_charges_once(gateway: StripeGateway, fake: FakeStripe) -> None:
    customer = await gateway.create_customer("cust_1")
    request = charge_request(customer, key="sub_1:period-0:attempt-0")
    first = await gateway.charge(request)
    second = await gateway.charge(request)
    assert first.status == second.status == "succeeded"
    assert second.payment_id == first.payment_id
    assert len(fake.get("/v1/charges")["data"]) == 1
    assert len(fake.get("/v1/payment_intents")["data"]) == 1
    # The same key for a different charge is refused, never run.
    with pytest.raises(GatewayError, match="same parameters"):
        await gateway.charge(charge_request(customer, key="sub_1:period-0:attempt-0", amount=500))
    assert len(fake.get("/v1/charges")["data"]) == 1


async def test_a_batch_of_charges_is_one_intent_each_answered_in_order(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer = await gateway.create_customer("cust_1")
    first = await gateway.charge(charge_request(customer, key="sub_1:period-1:attempt-1", off_session=True))
    batch = [charge_request(customer, key=f"sub_{i}:period-1:attempt-1", off_session=True) for i in range(1, 11)]
    batch[4] = charge_request(customer, "pm_card_visa_chargeDeclined", key="sub_5:period-1:attempt-1", off_session=True)
    results = await gateway.charge_many(batch)
    assert results[0] == first  # its key was charged before: Stripe's first answer, no second charge
    assert [r.status for r in results] == ["succeeded"] * 4 + ["failed"] + ["succeeded"] * 5
    assert len({r.payment_id for r in results}) == 10
    intents = {i["id"]: i for i in fake.get("/v1/payment_intents", limit=100)["data"]}
    assert [intents[r.payment_id]["metadata"]["idempotency_key"] for r in results] == [r.idempotency_key for r in batch]
    assert len(intents) == 10


async def test_a_batch_charge_without_a_result_has_its_error_and_the_rest_are_answered() -> None:
    """A charge the gateway does not answer (5xx after retries) or refuses itself (400, not a card's decline) has
    its error in the results, not raised: it does not hold up the others."""

    async def flaky(request: web.Request) -> web.Response:
        form = await request.post()
        if form["metadata[idempotency_key]"] == "sub_2:period-1:attempt-1":
            return web.json_response({"error": {"type": "api_error", "message": "Something went wrong."}}, status=500)
        if form["metadata[idempotency_key]"] == "sub_4:period-1:attempt-1":
            return web.json_response(
                {"error": {"type": "invalid_request_error", "message": "No such customer."}}, status=400
            )
        return web.json_response(
            {
                "id": f"pi_{form['metadata[idempotency_key]']}",
                "object": "payment_intent",
                "status": "succeeded",
                "client_secret": None,
            }
        )

    async with stub_stripe(flaky, max_network_retries=0) as gateway:
        results = await gateway.charge_many(
            [charge_request("cus_x", key=f"sub_{i}:period-1:attempt-1", off_session=True) for i in (1, 2, 3, 4, 5)]
        )
    assert [type(r).__name__ for r in results] == [
        "ChargeResult",
        "GatewayUnavailable",
        "ChargeResult",
        "GatewayError",
        "ChargeResult",
    ]
    assert [r.payment_id for r in results[::2]] == [f"pi_sub_{i}:period-1:attempt-1" for i in (1, 3, 5)]


async def test_C1_B2_charges_of_a_batch_whose_lease_was_lost_are_not_started() -> None:
    """C1/B2 (review finding 3): a batch charged a few at a time stops starting the charges whose subscriptions it
    no longer holds (its heartbeat found the lease lost, `withdrawn_charges`): another run may be charging them
    with the same keys. They answer GatewayUnavailable (no answer: taken over with the same key); the charges
    already started are answered."""
    withdrawn: set[str] = set()
    seen: list[str] = []

    async def slow(request: web.Request) -> web.Response:
        form = await request.post()
        key = form["metadata[idempotency_key]"]
        seen.append(key)
        withdrawn.update({"sub_9:period-1:attempt-1", "sub_10:period-1:attempt-1"})  # the heartbeat finds out
        await asyncio.sleep(0.2)
        return web.json_response(
            {"id": f"pi_{key}", "object": "payment_intent", "status": "succeeded", "client_secret": None}
        )

    token = withdrawn_charges.set(withdrawn)
    try:
        async with stub_stripe(slow, max_network_retries=0) as gateway:
            results = await gateway.charge_many(
                [charge_request("cus_x", key=f"sub_{i}:period-1:attempt-1", off_session=True) for i in range(1, 11)]
            )
    finally:
        withdrawn_charges.reset(token)
    assert CONCURRENT_CHARGES == 8
    assert [type(r).__name__ for r in results] == ["ChargeResult"] * 8 + ["GatewayUnavailable"] * 2
    assert sorted(seen) == sorted(f"sub_{i}:period-1:attempt-1" for i in range(1, 9))


async def test_off_session_renewal_on_the_saved_method(gateway: StripeGateway, fake: FakeStripe) -> None:
    customer = await gateway.create_customer("cust_1")
    purchase = await gateway.charge(charge_request(customer))
    saved = fake.get(f"/v1/payment_intents/{purchase.payment_id}")["payment_method"]
    assert saved.startswith("pm_") and saved != "pm_card_visa"
    renewal = await gateway.charge(charge_request(customer, saved, key="sub_1:period-1:attempt-0", off_session=True))
    assert renewal.status == "succeeded" and renewal.payment_id != purchase.payment_id
    intent = fake.get(f"/v1/payment_intents/{renewal.payment_id}")
    assert (intent["status"], intent["payment_method"], intent["customer"]) == ("succeeded", saved, customer)
    assert intent["setup_future_usage"] is None


async def test_method_needing_authentication(gateway: StripeGateway, fake: FakeStripe) -> None:
    customer = await gateway.create_customer("cust_1")
    on_session = await gateway.charge(charge_request(customer, "pm_card_authenticationRequired"))
    assert on_session.status == "requires_action"
    assert on_session.client_secret and on_session.client_secret.startswith(on_session.payment_id + "_secret_")
    assert fake.get(f"/v1/payment_intents/{on_session.payment_id}")["status"] == "requires_action"
    # Off-session nobody can authenticate: Stripe declines it.
    off_session = await gateway.charge(charge_request(customer, "pm_card_authenticationRequired", off_session=True))
    assert (off_session.status, off_session.decline_code) == ("failed", "authentication_required")
    assert off_session.payment_id.startswith("pi_")


async def test_completed_authentication_is_reported_by_a_signed_webhook(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer = await gateway.create_customer("cust_1")
    result = await gateway.charge(charge_request(customer, "pm_card_authenticationRequired"))
    async with Hooks() as hooks:
        fake.register_webhook(hooks.url, "whsec_test")
        fake.post(
            f"/v1/payment_intents/{result.payment_id}/_authenticate", client_secret=result.client_secret, success="true"
        )  # what the customer's 3-D Secure does (localstripe's route)
        event = await hooks.wait_for("payment_intent.succeeded", result.payment_id)
        assert event["data"]["object"]["id"] == result.payment_id
        assert hooks.signature_valid(event["id"], "whsec_test")
        assert not hooks.signature_valid(event["id"], "whsec_other")


async def test_a_completed_action_needs_nothing_from_stripe() -> None:
    """`complete_action` follows a signed `payment_intent.succeeded` in the gateway's own books; Stripe's are Stripe's:
    nothing is asked of it (here nothing listens, so any call would be GatewayUnavailable)."""
    gateway = StripeGateway("sk_test_x", f"http://127.0.0.1:{free_port()}", max_network_retries=0, timeout=1.0)
    try:
        assert await gateway.complete_action("pi_x") is None
    finally:
        await gateway.aclose()


async def test_unknown_kind_of_payment_method_is_refused_without_calling_stripe(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    result = await gateway.charge(charge_request("cus_x", "4242424242424242"))
    assert (result.status, result.payment_id, result.decline_code) == ("failed", "", "invalid_payment_method")
    assert fake.get("/v1/payment_intents")["data"] == []


# -- refunds


async def test_partial_refund_then_the_rest(gateway: StripeGateway, fake: FakeStripe) -> None:
    customer = await gateway.create_customer("cust_1")
    paid = await gateway.charge(charge_request(customer, amount=1000))
    first = await gateway.refund(paid.payment_id, 300, "refund-1")
    rest = await gateway.refund(paid.payment_id, 700, "refund-2")
    assert first.status == rest.status == "succeeded"
    assert first.refund_id.startswith("re_") and rest.refund_id != first.refund_id
    charge = fake.get("/v1/charges")["data"][0]
    assert (charge["amount_refunded"], charge["refunded"]) == (1000, True)


async def test_refund_over_what_is_left_is_a_gateway_error(gateway: StripeGateway, fake: FakeStripe) -> None:
    customer = await gateway.create_customer("cust_1")
    paid = await gateway.charge(charge_request(customer, amount=1000))
    await gateway.refund(paid.payment_id, 600, "refund-1")
    with pytest.raises(
        GatewayError,
        match=r"Refund amount \(\$5\.00\) is greater than unrefunded amount on charge "
        r"\(\$4\.00\)",
    ):
        await gateway.refund(paid.payment_id, 500, "refund-2")
    await gateway.refund(paid.payment_id, 400, "refund-3")
    with pytest.raises(GatewayError, match="already been refunded"):
        await gateway.refund(paid.payment_id, 1, "refund-4")
    assert fake.get("/v1/charges")["data"][0]["amount_refunded"] == 1000


async def test_refund_of_a_payment_that_did_not_succeed_is_a_gateway_error(gateway: StripeGateway) -> None:
    customer = await gateway.create_customer("cust_1")
    declined = await gateway.charge(charge_request(customer, "pm_card_visa_chargeDeclined"))
    with pytest.raises(GatewayError):
        await gateway.refund(declined.payment_id, 100, "refund-1")


async def test_refund_retried_with_the_same_key_refunds_once(gateway: StripeGateway, fake: FakeStripe) -> None:
    customer = await gateway.create_customer("cust_1")
    paid = await gateway.charge(charge_request(customer, amount=1000))
    first = await gateway.refund(paid.payment_id, 300, "refund-1")
    again = await gateway.refund(paid.payment_id, 300, "refund-1")
    assert again == first
    assert fake.get("/v1/charges")["data"][0]["amount_refunded"] == 300
    assert len(fake.get("/v1/refunds")["data"]) == 1


async def test_refund_sends_a_signed_charge_refunded_event(gateway: StripeGateway, fake: FakeStripe) -> None:
    customer = await gateway.create_customer("cust_1")
    paid = await gateway.charge(charge_request(customer, amount=1000))
    async with Hooks() as hooks:
        fake.register_webhook(hooks.url, "whsec_test")
        await gateway.refund(paid.payment_id, 250, "refund-1")
        event = await hooks.wait_for("charge.refunded", paid.payment_id)
        charge = event["data"]["object"]
        assert (charge["object"], charge["payment_intent"], charge["amount_refunded"]) == (
            "charge",
            paid.payment_id,
            250,
        )
        assert hooks.signature_valid(event["id"], "whsec_test")


# -- failures of the gateway itself


async def test_wrong_api_key_is_a_gateway_error(fake: FakeStripe) -> None:
    gateway = StripeGateway("not_a_secret_key", fake.url, max_network_retries=1, timeout=5.0)
    try:
        with pytest.raises(GatewayError):
            await gateway.create_customer("cust_1")
    finally:
        await gateway.aclose()


async def test_closed_port_is_unavailable_after_bounded_retries() -> None:
    gateway = StripeGateway("sk_test_x", f"http://127.0.0.1:{free_port()}", max_network_retries=1, timeout=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(GatewayUnavailable):
            await gateway.charge(charge_request("cus_x"))
        with pytest.raises(GatewayUnavailable):
            await gateway.refund("pi_x", 100, "refund-1")
    finally:
        await gateway.aclose()
    assert time.monotonic() - started < 10


async def test_dropped_connections_are_retried_a_bounded_number_of_times() -> None:
    attempts = 0

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    gateway = StripeGateway("sk_test_x", f"http://127.0.0.1:{port}", max_network_retries=2, timeout=2.0)
    try:
        with pytest.raises(GatewayUnavailable):
            await gateway.charge(charge_request("cus_x"))
    finally:
        await gateway.aclose()
        server.close()
        await server.wait_closed()
    assert attempts == 3  # the first try and two retries


async def test_server_errors_are_retried_with_the_same_key_then_unavailable() -> None:
    keys: list[str | None] = []

    async def failing(request: web.Request) -> web.Response:
        keys.append(request.headers.get("Idempotency-Key"))
        return web.json_response({"error": {"type": "api_error", "message": "Something went wrong."}}, status=500)

    async with stub_stripe(failing, max_network_retries=1) as gateway:
        with pytest.raises(GatewayUnavailable):
            await gateway.charge(charge_request("cus_x", key="sub_1:period-0:attempt-0"))
    assert keys == ["sub_1:period-0:attempt-0"] * 2


async def test_a_server_that_never_answers_times_out_as_unavailable() -> None:
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    gateway = StripeGateway("sk_test_x", f"http://127.0.0.1:{port}", max_network_retries=0, timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(GatewayUnavailable):
            await gateway.create_customer("cust_1")
    finally:
        release.set()
        await gateway.aclose()
        server.close()
        await server.wait_closed()
    assert time.monotonic() - started < 5


def test_a_key_still_in_flight_at_stripe_is_no_answer_yet_and_other_parameters_are_a_refusal():
    """Stripe answers a repeat that races the first request with 409 (retry later, same key); the same key with
    other parameters is a 400 (a refusal). Taking the 409 as a refusal would give back a refund's reservation while
    the first call is still moving the money."""
    from app.gateways.stripe import _translate

    in_flight = stripe.IdempotencyError(
        "There is currently another in-progress request using this key", http_status=409
    )
    assert isinstance(_translate(in_flight, "refund"), GatewayUnavailable)
    mismatch = stripe.IdempotencyError(
        "Keys for idempotent requests can only be used with the same parameters", http_status=400
    )
    assert type(_translate(mismatch, "refund")) is GatewayError


async def test_B1_cancel_payment_cancels_an_intent_waiting_for_action_idempotently(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer = await gateway.create_customer("cust_1")
    waiting = await gateway.charge(charge_request(customer, "pm_card_authenticationRequired"))
    assert await gateway.cancel_payment(waiting.payment_id, "cancel:pay_1") == "canceled"
    assert fake.get(f"/v1/payment_intents/{waiting.payment_id}")["status"] == "canceled"
    assert await gateway.cancel_payment(waiting.payment_id, "cancel:pay_1") == "canceled"  # replayed by its key
    assert await gateway.cancel_payment(waiting.payment_id, "cancel:pay_1b") == "canceled"  # canceled already: read


async def test_B1_cancel_payment_of_an_intent_that_succeeded_says_so(gateway: StripeGateway, fake: FakeStripe) -> None:
    customer = await gateway.create_customer("cust_1")
    paid = await gateway.charge(charge_request(customer))
    assert await gateway.cancel_payment(paid.payment_id, "cancel:pay_2") == "succeeded"
    assert fake.get(f"/v1/payment_intents/{paid.payment_id}")["status"] == "succeeded"
    with pytest.raises(GatewayError):
        await gateway.cancel_payment("pi_unknown_0123456789", "cancel:pay_3")
