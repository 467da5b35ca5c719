"""End to end through real processes and loopback HTTP only: the service as a `billing serve` process with the Stripe
gateway (Stripe test mode driven by the sandbox clock), the fake Stripe as another process that both answers the
service's API calls and delivers its own signed webhook events to the service, as Stripe does. A purchase needing
3-D Secure is completed by the customer at "Stripe", and the subscription becomes active only through Stripe's
`payment_intent.succeeded` event. Works on SQLite and PostgreSQL (the process uses the test database)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import START, customer_headers, ops_headers
from tests.support.fake_stripe import FakeStripe
from tests.support.servers import start_replica

DEADLINE_SECONDS = 20.0  # the fake sends each event about a second after the change


def test_a_payment_needing_action_is_activated_by_stripes_own_signed_event(clean_db):
    fake = FakeStripe()
    with ThreadPoolExecutor(1) as pool:  # both processes start at once
        starting = pool.submit(fake.start)
        try:
            replica = start_replica(
                clean_db,
                BILLING_GATEWAY="stripe",
                BILLING_STRIPE_API_KEY=fake.api_key,
                BILLING_STRIPE_API_BASE=fake.url,
                BILLING_SANDBOX="true",
            )
        except BaseException:
            starting.result()
            fake.stop()
            raise
    try:
        starting.result()
        fake.register_webhook(f"{replica.url}/v1/webhooks/stripe", "whsec_sandbox")
        with httpx.Client(base_url=replica.url, timeout=30) as api:

            def ok(response: httpx.Response, status: int = 200) -> dict:
                assert response.status_code == status, response.text
                return response.json()

            ok(api.post("/v1/sandbox/clock", json={"now": START}, headers=ops_headers()))
            ok(
                api.post(
                    "/v1/plans",
                    json={
                        "code": "pro-monthly",
                        "name": "Pro",
                        "tier": "subscription",
                        "interval": "month",
                        "amount": 2000,
                        "currency": "usd",
                        "trial_available": False,
                    },
                    headers=ops_headers(),
                ),
                201,
            )
            carol = ok(
                api.post(
                    "/v1/customers",
                    json={"email": "carol@example.com", "name": "Carol", "country": "US"},
                    headers=customer_headers("carol"),
                ),
                201,
            )
            sub = ok(
                api.post(
                    "/v1/subscriptions",
                    json={
                        "customer_id": carol["id"],
                        "plan": "pro-monthly",
                        "payment_method": "pm_card_authenticationRequired",
                    },
                    headers=customer_headers("carol"),
                ),
                201,
            )
            assert sub["status"] == "incomplete" and sub["client_secret"]
            [pending] = ok(api.get(f"/v1/customers/{carol['id']}/payments", headers=ops_headers()))["data"]
            assert pending["status"] == "pending" and pending["gateway"] == "stripe"
            intent = fake.get(f"/v1/payment_intents/{pending['gateway_payment_id']}")
            assert intent["status"] == "requires_action" and intent["client_secret"] == sub["client_secret"]

            # The customer passes 3-D Secure on the checkout page; only Stripe's event tells the service.
            fake.post(
                f"/v1/payment_intents/{intent['id']}/_authenticate", client_secret=sub["client_secret"], success="true"
            )
            deadline = time.monotonic() + DEADLINE_SECONDS
            while True:
                current = ok(api.get(f"/v1/subscriptions/{sub['id']}", headers=ops_headers()))
                if current["status"] != "incomplete" or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert current["status"] == "active", f"not activated within {DEADLINE_SECONDS} s: {fake.log()[-2000:]}"
            assert current["current_period_start"] == START
            [paid] = ok(api.get(f"/v1/customers/{carol['id']}/payments", headers=ops_headers()))["data"]
            assert paid["status"] == "succeeded" and paid["gateway_payment_id"] == intent["id"]
            assert fake.get(f"/v1/payment_intents/{intent['id']}")["status"] == "succeeded"
            assert ok(api.get(f"/v1/customers/{carol['id']}/access", headers=ops_headers()))["has_access"] is True
            [activated] = ok(
                api.get("/v1/audit-events", params={"action": "subscription.activated"}, headers=ops_headers())
            )["data"]
            assert activated["subject_id"] == sub["id"] and activated["actor"] == "system"
    finally:
        replica.stop()
        fake.stop()
