"""Payments through Stripe (issue 5), end to end through HTTP: the service built with `BILLING_GATEWAY=stripe` and
the sandbox clock on (Stripe test mode driven by the sandbox clock), talking with the real `stripe` library to the
local fake Stripe (localstripe plus tests/support/fake_stripe.py). What the service says is checked against what the
fake holds: PaymentIntents, refunds and the events it produced. Events reach the webhook signed with the sandbox's
secret, as Stripe signs them; the end-to-end delivery by the fake itself is tests/test_stripe_webhook_e2e.py.

Where a failure between the service and Stripe matters, the service talks to the fake through `StripeLink`, a small
recording proxy on a loopback port that can drop connections or lose Stripe's answers. No network: everything
listens on 127.0.0.1.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from fastapi.testclient import TestClient

from app.cli import main as billing
from app.clock import SystemClock
from tests.conftest import (
    SECRET,
    START,
    ManualWall,
    customer_headers,
    make_customer,
    make_plan,
    make_settings,
    move_clock,
    ops_headers,
    run_due,
)
from tests.support.fake_stripe import FakeStripe, free_port
from tests.support.webhooks import event, post_event

WHSEC = "whsec_sandbox"  # the webhook secret while the sandbox is on
LIVE = ("incomplete", "active", "past_due")


# --------------------------------------------------------------------------------------------------------------
# Fixtures and helpers


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


class StripeLink:
    """A recording HTTP proxy between the service and the fake Stripe, on a loopback port.

    `fault(method, path)` decides each request: "pass" forwards it; "drop" closes the connection without forwarding
    (Stripe unreachable); "lose" forwards it, so Stripe acts, then answers 502 instead of Stripe's answer (the
    answer lost on the way back); "lose_final" is "lose" with `Stripe-Should-Retry: false`, so the client gives up
    at once instead of retrying (where its retries are not the point). A request whose Idempotency-Key is in
    `refuse_keys` is answered 400 `invalid_request_error` without forwarding (Stripe refusing the request itself).
    `calls` records (method, path, Idempotency-Key, what happened, Stripe's Idempotent-Replayed header)."""

    def __init__(self, upstream: str, port: int | None = None) -> None:
        self.upstream = upstream
        self.port = port or free_port()
        self.fault: Callable[[str, str], str] = lambda method, path: "pass"
        self.refuse_keys: set[str] = set()
        self.calls: list[tuple[str, str, str | None, str, str | None]] = []
        link = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?", 1)[0]
                key = self.headers.get("Idempotency-Key")
                action = "refuse" if key in link.refuse_keys else link.fault(self.command, path)
                if action == "refuse":
                    link.calls.append((self.command, path, key, "refused", None))
                    payload = b'{"error": {"type": "invalid_request_error", "message": "No such customer."}}'
                    self.send_response(400)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if action == "drop":
                    link.calls.append((self.command, path, key, "dropped", None))
                    self.close_connection = True
                    return
                forwarded = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("authorization", "idempotency-key", "content-type", "stripe-version")
                }
                upstream = httpx.request(
                    self.command, link.upstream + self.path, content=body, headers=forwarded, timeout=10
                )
                replayed = upstream.headers.get("Idempotent-Replayed")
                extra = {"Stripe-Should-Retry": "false"} if action == "lose_final" else {}
                if action in ("lose", "lose_final"):
                    link.calls.append((self.command, path, key, "lost", replayed))
                    status, payload, content_type = 502, b'{"error": {"type": "api_error"}}', "application/json"
                else:
                    link.calls.append((self.command, path, key, "passed", replayed))
                    status, payload = upstream.status_code, upstream.content
                    content_type = upstream.headers.get("Content-Type", "application/json")
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                if replayed:
                    self.send_header("Idempotent-Replayed", replayed)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _relay

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StripeLink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def posts(self, path: str) -> list[tuple[str, str, str | None, str, str | None]]:
        return [c for c in self.calls if c[0] == "POST" and c[1] == path]


def failing(action: str, method: str, path: str) -> Callable[[str, str], str]:
    return lambda m, p: action if (m, p) == (method, path) else "pass"


@pytest.fixture
def link(fake: FakeStripe):
    proxy = StripeLink(fake.url).start()
    yield proxy
    proxy.stop()


def stripe_settings(database_url: str, api_base: str):
    return make_settings(database_url, gateway="stripe", stripe_api_key=FakeStripe.api_key, stripe_api_base=api_base)


class Service:
    """The service (its own app and TestClient) with Stripe at `api_base`, the sandbox clock at START."""

    def __init__(self, database_url: str, api_base: str, wall: SystemClock | None = None) -> None:
        from app.main import create_app

        self.settings = stripe_settings(database_url, api_base)
        self.client = TestClient(create_app(self.settings, system_clock=wall), raise_server_exceptions=False)
        self.client.__enter__()
        move_clock(self.client, START)

    def close(self) -> None:
        self.client.__exit__(None, None, None)


@pytest.fixture
def open_service(clean_db: str):
    opened: list[Service] = []

    def open_(api_base: str, wall: SystemClock | None = None) -> TestClient:
        service = Service(clean_db, api_base, wall)
        opened.append(service)
        return service.client

    yield open_
    for service in opened:
        service.close()


@pytest.fixture
def client(open_service, fake: FakeStripe) -> TestClient:
    """The service talking straight to the fake."""
    return open_service(fake.url)


def buy(
    client: TestClient,
    customer: dict,
    method: str = "pm_card_visa",
    *,
    key: str | None = None,
    plan: str = "pro-monthly",
) -> httpx.Response:
    headers = customer_headers(customer["external_id"])
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(
        "/v1/subscriptions",
        json={"customer_id": customer["id"], "plan": plan, "payment_method": method},
        headers=headers,
    )


def bought(client: TestClient, customer: dict, method: str = "pm_card_visa") -> dict:
    response = buy(client, customer, method)
    assert response.status_code == 201, response.text
    return response.json()


def payments_of(client: TestClient, customer: dict) -> list[dict]:
    response = client.get(f"/v1/customers/{customer['id']}/payments", headers=ops_headers())
    assert response.status_code == 200, response.text
    return sorted(response.json()["data"], key=lambda p: (p["created_at"], p["period_start"] or "", p["id"]))


def payment(client: TestClient, payment_id: str) -> dict:
    response = client.get(f"/v1/payments/{payment_id}", headers=ops_headers())
    assert response.status_code == 200, response.text
    return response.json()


def subscriptions_of(client: TestClient, customer: dict) -> list[dict]:
    response = client.get(f"/v1/customers/{customer['id']}/subscriptions", headers=ops_headers())
    assert response.status_code == 200, response.text
    return response.json()["data"]


def subscription(client: TestClient, sub_id: str) -> dict:
    response = client.get(f"/v1/subscriptions/{sub_id}", headers=ops_headers())
    assert response.status_code == 200, response.text
    return response.json()


def has_access(client: TestClient, customer: dict) -> bool:
    response = client.get(f"/v1/customers/{customer['id']}/access", headers=ops_headers())
    assert response.status_code == 200, response.text
    return response.json()["has_access"]


def refunds_of(client: TestClient, payment_id: str) -> list[dict]:
    response = client.get(f"/v1/payments/{payment_id}/refunds", headers=ops_headers())
    assert response.status_code == 200, response.text
    return sorted(response.json()["data"], key=lambda r: r["amount"])


def refund(client: TestClient, payment_id: str, amount: int, reason: str = "goodwill") -> httpx.Response:
    return client.post(
        f"/v1/payments/{payment_id}/refunds", json={"amount": amount, "reason": reason}, headers=ops_headers()
    )


def intents(fake: FakeStripe, gateway_customer: str) -> list[dict]:
    """The fake's PaymentIntents for one of its customers."""
    return [pi for pi in fake.get("/v1/payment_intents", limit=1000)["data"] if pi["customer"] == gateway_customer]


def card(fake: FakeStripe, number: str = "4242424242424242") -> str:
    """A real PaymentMethod in the fake, as Stripe.js would have created it on the checkout page."""
    return fake.post(
        "/v1/payment_methods",
        **{
            "type": "card",
            "card[number]": number,
            "card[exp_month]": "12",
            "card[exp_year]": "2034",
            "card[cvc]": "123",
        },
    )["id"]


def stripe_events(fake: FakeStripe, event_type: str | None = None) -> list[dict]:
    params = {"limit": 1000} if event_type is None else {"limit": 1000, "type": event_type}
    return fake.get("/v1/events", **params)["data"]


def deliver(client: TestClient, evt: dict) -> dict:
    """POST one of the fake's events to the webhook, signed now with the sandbox secret, as Stripe would."""
    reply = post_event(client, evt, WHSEC)
    assert reply.status_code == 200, reply.text
    return reply.json()


def audit(client: TestClient, action: str) -> list[dict]:
    response = client.get("/v1/audit-events", params={"action": action, "limit": 100}, headers=ops_headers())
    assert response.status_code == 200, response.text
    return response.json()["data"]


def setup_shop(client: TestClient, *names: str) -> list[dict]:
    make_plan(client, amount=2000)
    return [make_customer(client, name) for name in names]


# --------------------------------------------------------------------------------------------------------------
# Purchases


def test_B1_a_card_purchase_is_charged_through_stripe(client, fake):
    [alice] = setup_shop(client, "alice")
    sub = bought(client, alice)
    assert sub["status"] == "active" and sub.get("client_secret") is None
    [paid] = payments_of(client, alice)
    assert paid["status"] == "succeeded" and paid["gateway"] == "stripe" and paid["purpose"] == "purchase"
    assert paid["amount"] == sub["price"]["amount"] + sub["tax"]["amount"]
    assert re.fullmatch(r"pi_\w+", paid["gateway_payment_id"])
    intent = fake.get(f"/v1/payment_intents/{paid['gateway_payment_id']}")
    assert intent["status"] == "succeeded"
    assert (intent["amount"], intent["currency"]) == (paid["amount"], paid["currency"])
    assert intent["metadata"]["idempotency_key"] == f"{sub['id']}:period-0:attempt-1"
    assert intent["setup_future_usage"] == "off_session"  # the method is kept for the renewals
    stripe_customer = fake.get(f"/v1/customers/{intent['customer']}")
    assert stripe_customer["metadata"] == {"billing_customer_id": alice["id"]}
    assert has_access(client, alice)


def test_B1_a_declined_card_is_402_with_stripes_decline_code_and_nothing_live(client, fake):
    [bob] = setup_shop(client, "bob")
    response = buy(client, bob, "pm_card_chargeDeclined")
    assert response.status_code == 402, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == "card_declined" and "generic_decline" in problem["detail"]
    assert all(s["status"] not in LIVE for s in subscriptions_of(client, bob))
    assert not has_access(client, bob)
    [failed] = payments_of(client, bob)
    assert failed["status"] == "failed" and failed["failure_code"] == "generic_decline"
    intent = fake.get(f"/v1/payment_intents/{failed['gateway_payment_id']}")
    assert intent["status"] == "requires_payment_method"
    assert intent["last_payment_error"]["decline_code"] == "generic_decline"
    # The live slot is free: another card can buy at once.
    assert bought(client, bob)["status"] == "active"


def test_B1_a_purchase_needing_action_is_incomplete_until_stripe_reports_success(client, fake):
    [carol] = setup_shop(client, "carol")
    sub = bought(client, carol, "pm_card_authenticationRequired")
    assert sub["status"] == "incomplete" and sub["current_period_start"] is None
    [pending] = payments_of(client, carol)
    assert pending["status"] == "pending"
    intent = fake.get(f"/v1/payment_intents/{pending['gateway_payment_id']}")
    assert intent["status"] == "requires_action" and sub["client_secret"] == intent["client_secret"]
    assert not has_access(client, carol)

    # The customer authenticates on the page (Stripe.js); Stripe then reports the success.
    fake.post(f"/v1/payment_intents/{intent['id']}/_authenticate", client_secret=sub["client_secret"], success="true")
    [succeeded] = stripe_events(fake, "payment_intent.succeeded")
    assert deliver(client, succeeded) == {"received": True, "duplicate": False, "outcome": "applied"}
    active = subscription(client, sub["id"])
    assert active["status"] == "active" and active["current_period_start"] == START
    assert payments_of(client, carol)[0]["status"] == "succeeded"
    assert has_access(client, carol)
    assert deliver(client, succeeded)["duplicate"] is True


# --------------------------------------------------------------------------------------------------------------
# Renewals


def test_B2_renewal_charges_the_saved_method_off_session_once(client, fake):
    [alice] = setup_shop(client, "alice")
    method = card(fake)
    sub = bought(client, alice, method)
    [first] = payments_of(client, alice)
    stripe_customer = fake.get(f"/v1/payment_intents/{first['gateway_payment_id']}")["customer"]
    assert fake.get(f"/v1/payment_methods/{method}")["customer"] == stripe_customer  # saved by the purchase

    move_clock(client, sub["current_period_end"])
    assert run_due(client)["subscription_renewals"] == 1
    renewed = subscription(client, sub["id"])
    assert renewed["status"] == "active" and renewed["current_period_start"] == sub["current_period_end"]
    _, second = payments_of(client, alice)
    assert second["purpose"] == "renewal" and second["status"] == "succeeded"
    assert second["period_start"] == sub["current_period_end"]
    intent = fake.get(f"/v1/payment_intents/{second['gateway_payment_id']}")
    assert intent["status"] == "succeeded" and intent["amount"] == second["amount"]
    assert (intent["customer"], intent["payment_method"]) == (stripe_customer, method)
    assert intent["setup_future_usage"] is None  # off-session: nothing to set up, the customer is not there
    assert intent["metadata"]["idempotency_key"] == f"{sub['id']}:period-1:attempt-1"

    assert run_due(client)["subscription_renewals"] == 0
    assert len(payments_of(client, alice)) == 2
    assert len(intents(fake, stripe_customer)) == 2  # one PaymentIntent per period


def test_B5_an_off_session_renewal_needing_authentication_fails_and_is_retried(client, fake):
    [carol] = setup_shop(client, "carol")
    method = card(fake)
    sub = bought(client, carol, method)
    # The bank now wants 3-D Secure for this customer: the saved method is replaced by such a card.
    strict = card(fake, "4000002760003184")
    assert (
        client.post(
            f"/v1/subscriptions/{sub['id']}/payment-method",
            json={"payment_method": strict},
            headers=customer_headers("carol"),
        ).status_code
        == 200
    )
    move_clock(client, sub["current_period_end"])
    assert run_due(client)["subscription_renewals"] == 1
    dunning = subscription(client, sub["id"])
    assert dunning["status"] == "past_due" and dunning["next_retry_at"] is not None
    failed = payments_of(client, carol)[-1]
    assert failed["status"] == "failed" and failed["failure_code"] == "authentication_required"
    intent = fake.get(f"/v1/payment_intents/{failed['gateway_payment_id']}")
    assert intent["status"] == "requires_payment_method" and intent["payment_method"] == strict


def test_a_renewal_whose_answer_was_lost_is_charged_again_with_the_same_key_not_twice(open_service, fake, link):
    """Stripe charges, then its answer is lost (the same as the service crashing before recording it). The
    payment stays pending; the next run repeats the call with the payment's idempotency key, and Stripe answers with
    the PaymentIntent it created the first time."""
    client = open_service(link.url)
    [alice] = setup_shop(client, "alice")
    sub = bought(client, alice, card(fake))
    stripe_customer = fake.get(f"/v1/payment_intents/{payments_of(client, alice)[0]['gateway_payment_id']}")["customer"]

    link.fault = failing("lose", "POST", "/v1/payment_intents")
    link.calls.clear()
    move_clock(client, sub["current_period_end"])
    assert run_due(client)["subscription_renewals"] == 0  # no answer: nothing recorded
    lost = link.posts("/v1/payment_intents")
    key = f"{sub['id']}:period-1:attempt-1"
    assert [c[2] for c in lost] == [key] * len(lost) and len(lost) >= 2  # the client retried with the same key
    assert [c[4] for c in lost[1:]] == ["true"] * (len(lost) - 1)  # ... and Stripe replayed its first answer
    [charged] = [pi for pi in intents(fake, stripe_customer) if pi["metadata"]["idempotency_key"] == key]
    assert charged["status"] == "succeeded"  # Stripe did charge, once
    renewal = payments_of(client, alice)[-1]
    assert renewal["status"] == "pending" and renewal["gateway_payment_id"] is None
    # B2: from the period end it is in its next period, whether or not the renewal is recorded yet.
    assert subscription(client, sub["id"])["current_period_start"] == sub["current_period_end"]

    # No charge is in flight any more: the lease was given back (a cancellation is not held up meanwhile), and
    # the next run charges again, with the same key.
    link.fault = lambda method, path: "pass"
    assert run_due(client)["subscription_renewals"] == 1
    last = link.posts("/v1/payment_intents")[-1]
    assert last[2:] == (key, "passed", "true")
    renewal = payment(client, renewal["id"])
    assert renewal["status"] == "succeeded" and renewal["gateway_payment_id"] == charged["id"]
    assert subscription(client, sub["id"])["current_period_start"] == sub["current_period_end"]
    assert len(intents(fake, stripe_customer)) == 2
    assert run_due(client)["subscription_renewals"] == 0


def test_a_renewal_stripe_refuses_itself_fails_nobody_holds_up_no_other_and_is_tried_again(open_service, fake, link):
    """Stripe refuses one renewal for a reason that is not the card's (400 `invalid_request_error`): that customer
    is not failed for it (no dunning), the rest of the batch renews, the refused charge keeps its lease (not asked
    again meanwhile, as for a charge in flight) and is tried again with the same key once the lease runs out."""
    wall = ManualWall()
    client = open_service(link.url, wall)
    alice, bob = setup_shop(client, "alice", "bob")
    subs = {c["id"]: bought(client, c, card(fake)) for c in (alice, bob)}
    alice_sub, bob_sub = subs[alice["id"]], subs[bob["id"]]
    key = f"{bob_sub['id']}:period-1:attempt-1"
    link.refuse_keys = {key}
    move_clock(client, max(s["current_period_end"] for s in subs.values()))
    assert run_due(client)["subscription_renewals"] == 1
    assert subscription(client, alice_sub["id"])["current_period_start"] == alice_sub["current_period_end"]
    waiting = subscription(client, bob_sub["id"])  # B2: in its next period from the period end, not paid yet
    assert (waiting["status"], waiting["current_period_start"]) == ("active", bob_sub["current_period_end"])
    assert [(p["purpose"], p["status"]) for p in payments_of(client, bob)] == [
        ("purchase", "succeeded"),
        ("renewal", "pending"),
    ]
    assert run_due(client)["subscription_renewals"] == 0  # its lease still runs: not asked again
    wall.offset = _dt.timedelta(minutes=1)  # longer than a liveness lease (15 s): the refusal's back-off still runs
    assert run_due(client)["subscription_renewals"] == 0
    assert [c[3] for c in link.posts("/v1/payment_intents") if c[2] == key] == ["refused"]

    link.refuse_keys = set()
    wall.offset = _dt.timedelta(minutes=3)  # the lease (2 minutes, real time) has run out
    assert run_due(client)["subscription_renewals"] == 1
    renewed = subscription(client, bob_sub["id"])
    assert (renewed["status"], renewed["current_period_start"]) == ("active", bob_sub["current_period_end"])
    assert [(p["purpose"], p["status"]) for p in payments_of(client, bob)] == [
        ("purchase", "succeeded"),
        ("renewal", "succeeded"),
    ]
    assert [c[3] for c in link.posts("/v1/payment_intents") if c[2] == key] == ["refused", "passed"]


def test_a_lost_renewal_answer_is_settled_by_stripes_event_and_never_charged_again(open_service, fake, link):
    wall = ManualWall()
    client = open_service(link.url, wall)
    [alice] = setup_shop(client, "alice")
    sub = bought(client, alice, card(fake))
    link.fault = failing("lose_final", "POST", "/v1/payment_intents")
    move_clock(client, sub["current_period_end"])
    assert run_due(client)["subscription_renewals"] == 0
    attempts = len(link.posts("/v1/payment_intents"))
    renewal = payments_of(client, alice)[-1]
    assert renewal["status"] == "pending"

    # Stripe's event names the PaymentIntent the service never heard of: found by the key in its metadata.
    [succeeded] = [
        e
        for e in stripe_events(fake, "payment_intent.succeeded")
        if e["data"]["object"]["metadata"]["idempotency_key"] == f"{sub['id']}:period-1:attempt-1"
    ]
    assert deliver(client, succeeded)["outcome"] == "applied"
    renewal = payment(client, renewal["id"])
    assert renewal["status"] == "succeeded" and renewal["gateway_payment_id"] == succeeded["data"]["object"]["id"]
    assert subscription(client, sub["id"])["current_period_start"] == sub["current_period_end"]

    link.fault = lambda method, path: "pass"
    wall.offset = _dt.timedelta(minutes=3)
    assert run_due(client)["subscription_renewals"] == 0
    assert len(link.posts("/v1/payment_intents")) == attempts  # settled: Stripe is not called again


def test_two_replicas_running_due_jobs_at_once_charge_a_renewal_once(open_service, fake):
    first = open_service(fake.url)
    second = open_service(fake.url)  # a second replica on the same database
    customers = setup_shop(first, "alice", "bob", "carol")
    subs = [bought(first, c, card(fake)) for c in customers]
    move_clock(first, max(s["current_period_end"] for s in subs))

    results: list[dict] = []
    barrier = threading.Barrier(2)

    def run(client: TestClient) -> None:
        barrier.wait()
        results.append(run_due(client))

    threads = [threading.Thread(target=run, args=(c,)) for c in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2
    assert sum(r["subscription_renewals"] for r in results) == 3
    for customer in customers:
        paid = payments_of(first, customer)
        assert [p["status"] for p in paid] == ["succeeded", "succeeded"]
        stripe_customer = fake.get(f"/v1/payment_intents/{paid[0]['gateway_payment_id']}")["customer"]
        assert len(intents(fake, stripe_customer)) == 2


# --------------------------------------------------------------------------------------------------------------
# Refunds


def test_R2_an_ops_refund_reaches_stripe_and_an_over_refund_never_leaves_the_service(open_service, fake, link):
    client = open_service(link.url)
    [alice] = setup_shop(client, "alice")
    bought(client, alice)
    [paid] = payments_of(client, alice)
    response = refund(client, paid["id"], 500)
    assert response.status_code == 201, response.text
    ours = response.json()
    assert (ours["amount"], ours["currency"], ours["created_by"]) == (500, "usd", "staff-1")
    assert ours["source"] == "ops" and ours["status"] == "succeeded"
    at_stripe = fake.get(f"/v1/refunds/{ours['gateway_refund_id']}")
    assert (at_stripe["amount"], at_stripe["status"]) == (500, "succeeded")
    assert at_stripe["payment_intent"] == paid["gateway_payment_id"]
    assert at_stripe["metadata"] == {"billing_refund_id": ours["id"]}
    assert payment(client, paid["id"])["refunded_amount"] == 500

    refunds_sent = len(link.posts("/v1/refunds"))
    over = refund(client, paid["id"], paid["amount"] - 500 + 1)
    assert over.status_code == 422 and over.json()["code"] == "refund_exceeds_payment", over.text
    assert len(link.posts("/v1/refunds")) == refunds_sent  # refused by the service: Stripe never asked
    assert payment(client, paid["id"])["refunded_amount"] == 500

    # Stripe's `charge.refunded` for our own refund: recognised by its metadata, not recorded a second time.
    [echo] = stripe_events(fake, "charge.refunded")
    assert deliver(client, echo)["outcome"] == "already_applied"
    assert [r["id"] for r in refunds_of(client, paid["id"])] == [ours["id"]]
    assert payment(client, paid["id"])["refunded_amount"] == 500

    rest = refund(client, paid["id"], paid["amount"] - 500)
    assert rest.status_code == 201, rest.text
    charge = fake.get(f"/v1/payment_intents/{paid['gateway_payment_id']}")["latest_charge"]
    assert charge["amount_refunded"] == paid["amount"] and charge["refunded"] is True
    assert payment(client, paid["id"])["refunded_amount"] == paid["amount"]


def test_a_refund_made_in_stripes_dashboard_is_recorded_once(client, fake):
    [alice] = setup_shop(client, "alice")
    bought(client, alice)
    [paid] = payments_of(client, alice)
    dashboard = fake.post("/v1/refunds", payment_intent=paid["gateway_payment_id"], amount=300)
    [refunded] = stripe_events(fake, "charge.refunded")
    assert deliver(client, refunded) == {"received": True, "duplicate": False, "outcome": "applied"}
    [recorded] = refunds_of(client, paid["id"])
    assert recorded["source"] == "gateway" and recorded["gateway_refund_id"] == dashboard["id"]
    assert (recorded["amount"], recorded["currency"], recorded["status"]) == (300, "usd", "succeeded")
    assert payment(client, paid["id"])["refunded_amount"] == 300
    [audited] = audit(client, "refund.recorded_from_gateway")
    assert audited["subject_id"] == recorded["id"] and audited["data"]["gateway_refund_id"] == dashboard["id"]

    # The same event again: nothing.
    assert deliver(client, refunded)["duplicate"] is True
    assert len(refunds_of(client, paid["id"])) == 1 and payment(client, paid["id"])["refunded_amount"] == 300

    # The dashboard refund counts against what is left; the next event lists it again, and it is not re-recorded.
    too_much = refund(client, paid["id"], paid["amount"] - 300 + 1)
    assert too_much.status_code == 422 and too_much.json()["code"] == "refund_exceeds_payment"
    assert refund(client, paid["id"], 200).status_code == 201
    later = [e for e in stripe_events(fake, "charge.refunded") if e["id"] != refunded["id"]]
    assert len(later) == 1 and len(later[0]["data"]["object"]["refunds"]["data"]) == 2
    assert deliver(client, later[0])["outcome"] == "already_applied"
    assert sorted((r["source"], r["amount"]) for r in refunds_of(client, paid["id"])) == [
        ("gateway", 300),
        ("ops", 200),
    ]
    assert payment(client, paid["id"])["refunded_amount"] == 500


def test_R2_a_refund_whose_answer_was_lost_is_repeated_by_the_job_with_the_same_key(open_service, fake, link):
    wall = ManualWall()  # "no answer for 5 minutes" is real time (the business clock may jump)
    client = open_service(link.url, wall)
    [alice] = setup_shop(client, "alice")
    bought(client, alice)
    [paid] = payments_of(client, alice)
    link.fault = failing("lose_final", "POST", "/v1/refunds")
    response = refund(client, paid["id"], 500)
    assert response.status_code == 201 and response.json()["status"] == "pending", response.text
    [pending] = refunds_of(client, paid["id"])
    assert pending["status"] == "pending" and pending["gateway_refund_id"] is None
    assert payment(client, paid["id"])["refunded_amount"] == 500  # reserved: no other refund can exceed it
    [made] = fake.get("/v1/refunds", limit=100)["data"]  # Stripe did refund

    link.fault = lambda method, path: "pass"
    assert run_due(client)["refund_retries"] == 0  # not before five minutes
    move_clock(client, "2030-01-16T12:05:00Z")  # a day of business time, no real time: still not
    assert run_due(client)["refund_retries"] == 0
    wall.offset = _dt.timedelta(minutes=5)
    assert run_due(client)["refund_retries"] == 1
    assert link.posts("/v1/refunds")[-1][2:] == (pending["id"], "passed", "true")  # Stripe replayed its refund
    [settled] = refunds_of(client, paid["id"])
    assert settled["status"] == "succeeded" and settled["gateway_refund_id"] == made["id"]
    assert [r["id"] for r in fake.get("/v1/refunds", limit=100)["data"]] == [made["id"]]
    assert payment(client, paid["id"])["refunded_amount"] == 500


def test_R2_an_ops_retry_after_a_lost_refund_answer_refunds_once(open_service, fake, link):
    wall = ManualWall()  # "no answer for 5 minutes" is real time (the business clock may jump)
    client = open_service(link.url, wall)
    [alice] = setup_shop(client, "alice")
    bought(client, alice)
    [paid] = payments_of(client, alice)
    headers = {**ops_headers(), "Idempotency-Key": "refund-alice-1"}
    body = {"amount": 500, "reason": "goodwill"}
    link.fault = failing("lose_final", "POST", "/v1/refunds")
    first = client.post(f"/v1/payments/{paid['id']}/refunds", json=body, headers=headers)
    # No answer from Stripe: the refund is recorded as pending (its amount reserved) and completed later.
    assert first.status_code == 201 and first.json()["status"] == "pending", first.text

    link.fault = lambda method, path: "pass"
    retried = client.post(f"/v1/payments/{paid['id']}/refunds", json=body, headers=headers)
    assert retried.status_code < 500, retried.text
    wall.offset = _dt.timedelta(minutes=5)
    run_due(client)  # the refund job completes whatever is still pending
    assert sum(r["amount"] for r in fake.get("/v1/refunds", limit=100)["data"]) == 500
    assert payment(client, paid["id"])["refunded_amount"] == 500
    assert sum(r["amount"] for r in refunds_of(client, paid["id"]) if r["status"] == "succeeded") == 500


# --------------------------------------------------------------------------------------------------------------
# Stripe unreachable


def test_stripe_unreachable_is_503_and_a_retry_with_the_same_key_charges_once(open_service, fake):
    port = free_port()  # nothing listens there yet
    client = open_service(f"http://127.0.0.1:{port}")
    [alice] = setup_shop(client, "alice")
    response = buy(client, alice, key="buy-alice-1")
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "gateway_unavailable"
    assert all(s["status"] != "active" for s in subscriptions_of(client, alice))
    assert not has_access(client, alice)
    assert fake.get("/v1/payment_intents", limit=1000)["data"] == []

    proxy = StripeLink(fake.url, port).start()  # Stripe is back
    try:
        retried = buy(client, alice, key="buy-alice-1")
        assert retried.status_code == 201, retried.text
        assert retried.json()["status"] == "active"
        replayed = buy(client, alice, key="buy-alice-1")
        assert replayed.status_code == 201 and replayed.headers.get("Idempotent-Replayed") == "true"
        assert replayed.json()["id"] == retried.json()["id"]
    finally:
        proxy.stop()
    [paid] = [p for p in payments_of(client, alice) if p["status"] == "succeeded"]
    assert len(fake.get("/v1/payment_intents", limit=1000)["data"]) == 1
    assert fake.get(f"/v1/payment_intents/{paid['gateway_payment_id']}")["amount"] == paid["amount"]


@pytest.mark.parametrize("fault", ["drop", "lose_final"])
def test_a_purchase_whose_charge_got_no_answer_can_be_retried_with_the_same_key(open_service, fake, link, fault):
    """Stripe is reached for the customer but not for the charge ("drop": the charge never arrived; "lose": it was
    made and its answer lost). 503, nothing active; the client's retry with the same Idempotency-Key must then
    succeed, charging once (the payment's own idempotency key makes Stripe replay a charge it already made)."""
    client = open_service(link.url)
    [alice] = setup_shop(client, "alice")
    link.fault = failing(fault, "POST", "/v1/payment_intents")
    response = buy(client, alice, key="buy-alice-1")
    assert response.status_code == 503 and response.json()["code"] == "gateway_unavailable", response.text
    assert all(s["status"] != "active" for s in subscriptions_of(client, alice))
    assert not has_access(client, alice)

    link.fault = lambda method, path: "pass"
    retried = buy(client, alice, key="buy-alice-1")
    assert retried.status_code == 201, retried.text
    assert retried.json()["status"] == "active"
    assert len(fake.get("/v1/payment_intents", limit=1000)["data"]) == 1
    assert [p["status"] for p in payments_of(client, alice)].count("succeeded") == 1


# --------------------------------------------------------------------------------------------------------------
# Stripe-specific webhooks


def test_a_dispute_is_audited_for_ops(client, fake):
    [alice] = setup_shop(client, "alice")
    sub = bought(client, alice)
    [paid] = payments_of(client, alice)
    charge = fake.get(f"/v1/payment_intents/{paid['gateway_payment_id']}")["latest_charge"]
    # localstripe has no disputes: the event is Stripe's shape, built around the fake's real charge.
    dispute = {
        "id": "du_1Test0dispute0000000001",
        "object": "dispute",
        "amount": paid["amount"],
        "currency": paid["currency"],
        "charge": charge["id"],
        "payment_intent": paid["gateway_payment_id"],
        "reason": "fraudulent",
        "status": "needs_response",
        "created": int(time.time()),
        "livemode": False,
        "is_charge_refundable": False,
        "metadata": {},
    }
    disputed = event("charge.dispute.created", dispute)
    assert deliver(client, disputed) == {"received": True, "duplicate": False, "outcome": "recorded"}
    [entry] = audit(client, "payment.disputed")
    assert (entry["subject_type"], entry["subject_id"], entry["customer_id"]) == ("payment", paid["id"], alice["id"])
    assert entry["reason"] == "fraudulent" and entry["actor"] == "system"
    assert entry["data"]["dispute_id"] == dispute["id"] and entry["data"]["amount"] == paid["amount"]
    assert deliver(client, disputed)["duplicate"] is True
    assert len(audit(client, "payment.disputed")) == 1
    assert subscription(client, sub["id"])["status"] == "active"  # a dispute changes no subscription by itself


# --------------------------------------------------------------------------------------------------------------
# billing replay-events


def test_replay_events_applies_what_an_outage_missed_once(client, fake, clean_db, monkeypatch, capsys):
    since = _dt.datetime.now(_dt.UTC) - _dt.timedelta(seconds=2)
    carol, alice = setup_shop(client, "carol", "alice")
    incomplete = bought(client, carol, "pm_card_authenticationRequired")
    bought(client, alice)
    [paid] = payments_of(client, alice)

    # The outage: no webhook endpoint registered, so Stripe's events are not delivered.
    fake.post(
        f"/v1/payment_intents/{payments_of(client, carol)[0]['gateway_payment_id']}/_authenticate",
        client_secret=incomplete["client_secret"],
        success="true",
    )
    dashboard = fake.post("/v1/refunds", payment_intent=paid["gateway_payment_id"], amount=300)
    with httpx.Client(base_url=fake.url, auth=(fake.api_key, ""), timeout=5) as stripe_api:
        for _ in range(100):  # more events than one page of Stripe's list
            stripe_api.post("/v1/customers").raise_for_status()
    assert subscription(client, incomplete["id"])["status"] == "incomplete"
    assert payment(client, paid["id"])["refunded_amount"] == 0
    produced = len(stripe_events(fake))
    assert produced > 100

    for name in [n for n in os.environ if n.startswith("BILLING_")]:
        monkeypatch.delenv(name)
    env = {
        "DATABASE_URL": clean_db,
        "AUTH_SECRET": SECRET,
        "SANDBOX": "true",
        "DEMO_PLANS": "false",
        "GATEWAY": "stripe",
        "STRIPE_API_KEY": fake.api_key,
        "STRIPE_API_BASE": fake.url,
        "SCHEDULER_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
    }
    for name, value in env.items():
        monkeypatch.setenv(f"BILLING_{name}", value)

    def replay(at: _dt.datetime) -> dict[str, int]:
        capsys.readouterr()
        assert billing(["replay-events", "--since", at.isoformat().replace("+00:00", "Z")]) == 0
        out = capsys.readouterr().out.strip()
        return {} if out == "no events" else {k: int(v) for k, v in (p.split("=") for p in out.split())}

    first = replay(since)
    assert sum(first.values()) == produced  # every page was read
    assert first["applied"] == 2 and first["ignored"] >= 100
    assert subscription(client, incomplete["id"])["status"] == "active"
    [recorded] = refunds_of(client, paid["id"])
    assert recorded["source"] == "gateway" and recorded["gateway_refund_id"] == dashboard["id"]
    assert payment(client, paid["id"])["refunded_amount"] == 300

    again = replay(since)
    assert again == {"duplicate": produced}  # seen before: nothing applied twice
    assert len(refunds_of(client, paid["id"])) == 1 and payment(client, paid["id"])["refunded_amount"] == 300
    assert replay(_dt.datetime.now(_dt.UTC) + _dt.timedelta(minutes=1)) == {}


def test_replay_events_refuses_without_the_stripe_gateway(clean_db, monkeypatch, capsys):
    for name in [n for n in os.environ if n.startswith("BILLING_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("BILLING_DATABASE_URL", clean_db)
    monkeypatch.setenv("BILLING_SANDBOX", "true")
    assert billing(["replay-events", "--since", "2030-01-01T00:00:00Z"]) == 2
    assert "Stripe gateway" in capsys.readouterr().err
