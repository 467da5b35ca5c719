"""Races found by the replica test (tests/reliability/test_replicas.py), replayed deterministically in one process.
The racing request is sent while the first one is held at a precise point: inside a gateway call (outside any
transaction, where a real gateway takes its time: the sandbox gateway is wrapped), or inside a settlement that holds
a payment's row lock (`charging.record_success` is wrapped). The test then lets the first one go on."""

from __future__ import annotations

import asyncio
import datetime as _dt
import threading
import time

import pytest
from fastapi.testclient import TestClient

from app.gateways.base import charge_each
from tests.conftest import START, make_settings
from tests.reliability.support import Api, iso, parse
from tests.support.waiting import until_set


class GatedGateway:
    """The sandbox gateway, except that off-session charges (renewals, retries) wait for `release` before they are
    made, and, once `hold_refunds` is set, the next refund is made but its answer waits for `release_refund`."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.started = threading.Event()
        self.release = threading.Event()
        self.hold_refunds = False
        self.refund_made = threading.Event()
        self.release_refund = threading.Event()

    async def charge(self, request):
        if request.off_session and not self.release.is_set():
            self.started.set()
            await until_set(self.release)
        return await self.inner.charge(request)

    async def refund(self, payment_id: str, amount: int, idempotency_key: str):
        result = await self.inner.refund(payment_id, amount, idempotency_key)
        if self.hold_refunds and not self.refund_made.is_set():
            self.refund_made.set()  # the money went back; the answer is slow to arrive
            await until_set(self.release_refund)
        return result

    async def charge_many(self, requests):
        return await charge_each(self.charge, requests)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


@pytest.fixture
def gated(clean_db):
    from app.main import create_app

    app = create_app(make_settings(clean_db))
    gateway = app.state.ctx.gateway = GatedGateway(app.state.ctx.gateway)
    with TestClient(app, raise_server_exceptions=False) as client:
        api = Api(client)
        api.ok("POST", "/v1/sandbox/clock", json={"now": START})
        api.ok(
            "POST",
            "/v1/plans",
            201,
            json={
                "code": "pro-monthly",
                "name": "Pro",
                "tier": "subscription",
                "interval": "month",
                "amount": 2000,
                "currency": "usd",
                "trial_available": True,
            },
        )
        yield api, gateway


def test_C1_a_cancellation_racing_a_failing_renewal_stops_all_further_charges(gated):
    api, gateway = gated
    alice, sub, _refused, cancelled = race_cancel_with_renewal(api, gateway, "pm_card_chargeDeclined")
    assert cancelled["status"] == "canceled"  # past due after the declined renewal: it ends at once, no retry
    period_end = parse(sub["current_period_end"])
    # The retry dates (period end + 1, 3, 7 days) all pass.
    api.ok("POST", "/v1/sandbox/clock", json={"now": iso(period_end + _dt.timedelta(days=8))})
    api.ok("POST", "/v1/sandbox/run-due")
    payments = sorted(api.all(f"/v1/customers/{alice['id']}/payments"), key=lambda p: p["created_at"])
    after = [p for p in payments if parse(p["created_at"]) > parse(cancelled["canceled_at"])]
    assert after == [], f"charged {len(after)} more times after the cancellation: {[p['purpose'] for p in after]}"
    assert api.ok("GET", f"/v1/subscriptions/{sub['id']}")["status"] == "canceled"


def race_cancel_with_renewal(api: Api, gateway: GatedGateway, payment_method: str) -> tuple[dict, ...]:
    """A subscriber cancels while the renewal due at the end of their first period is being charged: the
    cancellation is refused for the moment (409 `charge_in_progress`, with Retry-After, the Idempotency-Key
    released), and the same request, repeated once the charge is settled, is confirmed."""
    alice = api.as_customer("alice").ok(
        "POST", "/v1/customers", 201, json={"email": "alice@example.com", "name": "Alice", "country": "US"}
    )
    me = api.as_customer("alice")
    sub = me.ok(
        "POST",
        "/v1/subscriptions",
        201,
        json={"customer_id": alice["id"], "plan": "pro-monthly", "payment_method": "pm_card_visa"},
    )
    if payment_method != "pm_card_visa":
        me.ok("POST", f"/v1/subscriptions/{sub['id']}/payment-method", json={"payment_method": payment_method})
    api.ok("POST", "/v1/sandbox/clock", json={"now": iso(parse(sub["current_period_end"]) + _dt.timedelta(hours=1))})
    ran: dict = {}
    renewal = threading.Thread(target=lambda: ran.update(api.ok("POST", "/v1/sandbox/run-due")["jobs"]))
    renewal.start()
    key = {"Idempotency-Key": "cancel-during-renewal"}
    try:
        assert gateway.started.wait(30), "the renewal never reached the gateway"
        refused = me.post(f"/v1/subscriptions/{sub['id']}/cancel", headers=key)  # while the charge is running
    finally:
        gateway.release.set()
        renewal.join(30)
    assert ran["subscription_renewals"] == 1
    assert refused.status_code == 409 and refused.json()["code"] == "charge_in_progress", refused.text
    assert 0 < int(refused.headers["Retry-After"]) <= 120
    assert not [n for n in api.all(f"/v1/customers/{alice['id']}/notices") if n["type"] == "cancellation_scheduled"]
    cancelled = me.ok("POST", f"/v1/subscriptions/{sub['id']}/cancel", headers=key)  # the retry, same key
    return alice, sub, refused, cancelled


def test_C1_a_cancellation_racing_a_successful_renewal_is_honoured_as_confirmed(gated):
    api, gateway = gated
    alice, sub, _refused, cancelled = race_cancel_with_renewal(api, gateway, "pm_card_visa")
    assert cancelled["cancel_at_period_end"] is True and cancelled["status"] == "active"
    renewed_end = parse(cancelled["current_period_end"])
    assert renewed_end > parse(sub["current_period_end"])  # the renewal, settled first, paid the next period
    [confirmation] = [
        n for n in api.all(f"/v1/customers/{alice['id']}/notices") if n["type"] == "cancellation_scheduled"
    ]
    assert renewed_end.strftime("%d %B %Y, %H:%M UTC") in confirmation["subject"]  # the end it names is kept
    api.ok("POST", "/v1/sandbox/clock", json={"now": iso(renewed_end + _dt.timedelta(days=40))})
    api.ok("POST", "/v1/sandbox/run-due")
    after = [
        p
        for p in api.all(f"/v1/customers/{alice['id']}/payments")
        if parse(p["created_at"]) > parse(cancelled["canceled_at"])
    ]
    final = api.ok("GET", f"/v1/subscriptions/{sub['id']}")
    assert after == [] and final["status"] == "canceled" and parse(final["ended_at"]) == renewed_end


@pytest.fixture
def paused_settlement(monkeypatch):
    """Pause `charging.record_success` (called by `settle` once it holds the subscription's and the payment's row
    locks) until the test releases it: the window in which a concurrent request can interleave."""
    from app.subscriptions import charging

    reached, release = threading.Event(), threading.Event()
    real = charging.record_success

    async def paused(*args, **kwargs):
        reached.set()
        await until_set(release)
        return await real(*args, **kwargs)

    monkeypatch.setattr(charging, "record_success", paused)
    return reached, release


def waiting_on_a_lock(database_url: str, timeout: float = 15) -> bool:
    """PostgreSQL: wait until some session of the test database waits for a row lock."""
    import asyncpg
    from sqlalchemy.engine import make_url

    async def poll() -> bool:
        conn = await asyncpg.connect(make_url(database_url).set(drivername="postgresql").render_as_string(False))
        try:
            for _ in range(int(timeout / 0.05)):
                if await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                ):
                    return True
                await asyncio.sleep(0.05)
            return False
        finally:
            await conn.close()

    return asyncio.run(poll())


def test_a_cancellation_racing_a_webhook_that_settles_the_purchase_is_not_a_server_error(
    gated, paused_settlement, is_postgres, clean_db
):
    """Settlements and cancellations lock the subscription, then its payments: one order, no deadlock on
    PostgreSQL (the cancellation waits for the settlement, then ends what the settlement left)."""
    api, _gateway = gated
    reached, release = paused_settlement
    alice = api.as_customer("alice").ok(
        "POST", "/v1/customers", 201, json={"email": "alice@example.com", "name": "Alice", "country": "US"}
    )
    me = api.as_customer("alice")
    sub = me.ok(
        "POST",
        "/v1/subscriptions",
        201,
        json={"customer_id": alice["id"], "plan": "pro-monthly", "payment_method": "pm_card_authenticationRequired"},
    )
    [payment] = api.all(f"/v1/customers/{alice['id']}/payments")
    assert sub["status"] == "incomplete" and payment["status"] == "pending"

    from tests.support.webhooks import intent_event, post_event

    answers: dict = {}
    evt = intent_event("payment_intent.succeeded", payment["gateway_payment_id"], amount=payment["amount"])
    webhook = threading.Thread(target=lambda: answers.update(webhook=post_event(api.http, evt, "whsec_sandbox")))
    cancel = threading.Thread(target=lambda: answers.update(cancel=me.post(f"/v1/subscriptions/{sub['id']}/cancel")))
    webhook.start()
    try:
        assert reached.wait(30), "the webhook never reached the settlement"
        cancel.start()  # waits for the subscription the settlement holds
        if is_postgres:
            assert waiting_on_a_lock(clean_db), "the cancellation never waited for the payment's lock"
        else:
            time.sleep(0.5)  # SQLite: the cancellation waits for the write lock (BEGIN IMMEDIATE)
    finally:
        release.set()
        webhook.join(30)
        cancel.join(30)
    statuses = {name: response.status_code for name, response in answers.items()}
    assert statuses["webhook"] < 500 and statuses["cancel"] < 500, {k: r.text[:200] for k, r in answers.items()}
    final = api.ok("GET", f"/v1/subscriptions/{sub['id']}")
    assert final["status"] in ("active", "canceled")


def test_R2_a_refund_in_flight_is_not_refunded_twice_by_the_retry_job(gated):
    """A refund still waiting for the gateway's answer is not abandoned by a move of the sandbox clock: "no answer"
    is measured in real time, and the sandbox refunds once per idempotency key, as Stripe does."""
    api, gateway = gated
    alice = api.as_customer("alice").ok(
        "POST", "/v1/customers", 201, json={"email": "alice@example.com", "name": "Alice", "country": "US"}
    )
    api.as_customer("alice").ok(
        "POST",
        "/v1/subscriptions",
        201,
        json={"customer_id": alice["id"], "plan": "pro-monthly", "payment_method": "pm_card_visa"},
    )
    [payment] = api.all(f"/v1/customers/{alice['id']}/payments")
    gateway.hold_refunds = True
    answers: dict = {}
    first = threading.Thread(
        target=lambda: answers.update(
            first=api.post(f"/v1/payments/{payment['id']}/refunds", json={"amount": 500, "reason": "late delivery"})
        )
    )
    first.start()
    try:
        assert gateway.refund_made.wait(30), "the refund never reached the gateway"
        # Meanwhile ops move the sandbox clock on a day and run the due jobs.
        api.ok("POST", "/v1/sandbox/clock", json={"now": iso(api.clock() + _dt.timedelta(days=1))})
        api.ok("POST", "/v1/sandbox/run-due")
    finally:
        gateway.release_refund.set()
        first.join(30)
    assert answers["first"].status_code == 201, answers["first"].text
    assert api.ok("GET", f"/v1/payments/{payment['id']}")["refunded_amount"] == 500
    rest = api.post(f"/v1/payments/{payment['id']}/refunds", json={"amount": 1500, "reason": "goodwill"})
    assert rest.status_code == 201, rest.text  # 1500 of the 2000 paid is left to refund


def test_R3_a_renewal_charge_that_succeeds_after_a_termination_is_booked_for_ops_not_lost(gated):
    """Ops terminate an account while its renewal is being charged. The termination ends the subscription and
    gives up the pending payment; the charge then succeeds at the gateway. The books record the money taken
    (succeeded, audited as `payment.succeeded_without_effect`, for ops to refund at their discretion, R2) and the
    subscription stays ended: nothing is renewed, nothing lost."""
    api, gateway = gated
    alice = api.as_customer("alice").ok(
        "POST", "/v1/customers", 201, json={"email": "alice@example.com", "name": "Alice", "country": "US"}
    )
    sub = api.as_customer("alice").ok(
        "POST",
        "/v1/subscriptions",
        201,
        json={"customer_id": alice["id"], "plan": "pro-monthly", "payment_method": "pm_card_visa"},
    )
    api.ok("POST", "/v1/sandbox/clock", json={"now": iso(parse(sub["current_period_end"]) + _dt.timedelta(hours=1))})
    ran: dict = {}
    renewal = threading.Thread(target=lambda: ran.update(api.ok("POST", "/v1/sandbox/run-due")["jobs"]))
    renewal.start()
    try:
        assert gateway.started.wait(30), "the renewal never reached the gateway"
        api.ok("POST", f"/v1/customers/{alice['id']}/terminate", json={"reason": "terms violation"})
    finally:
        gateway.release.set()
        renewal.join(30)
    final = api.ok("GET", f"/v1/subscriptions/{sub['id']}")
    assert final["status"] == "canceled" and final["ended_reason"] == "terminated"
    assert final["current_period_end"] == sub["current_period_end"]  # not renewed
    renewal_payment = [p for p in api.all(f"/v1/customers/{alice['id']}/payments") if p["purpose"] == "renewal"]
    assert [p["status"] for p in renewal_payment] == ["succeeded"]  # the money the gateway took is on the books
    events = api.all("/v1/audit-events", params={"customer_id": alice["id"]})
    assert [
        e
        for e in events
        if e["action"] == "payment.succeeded_without_effect" and e["subject_id"] == renewal_payment[0]["id"]
    ]


def test_C1_B2_a_cancellation_during_a_gateway_outage_after_the_period_end_keeps_the_due_renewal(gated):
    """The renewal due at the period end is charged an hour after it, but the answer is lost (GatewayUnavailable):
    no charge is in flight any more, so the subscriber's cancellation is accepted at once (not held up for the
    outage). Asked after the period end, it is asked in the renewed period (B2): it is confirmed for the renewed
    period's end. When the gateway later reports that the lost charge succeeded, that charge pays the renewal that
    was due, and the subscription ends at the confirmed end: no further charge."""
    from app.gateways.base import GatewayUnavailable
    from tests.support.webhooks import intent_event, post_event

    api, gateway = gated
    gateway.release.set()  # charges are not held here: their answers are lost instead
    answered = gateway.inner
    made: list = []

    class LostAnswers:
        name = answered.name

        async def charge(self, request):
            result = await answered.charge(request)
            if request.off_session:
                made.append(result)
                raise GatewayUnavailable("the answer was lost")
            return result

        def __getattr__(self, attr: str):
            return getattr(answered, attr)

    gateway.inner = LostAnswers()
    alice = api.as_customer("alice").ok(
        "POST", "/v1/customers", 201, json={"email": "alice@example.com", "name": "Alice", "country": "US"}
    )
    me = api.as_customer("alice")
    sub = me.ok(
        "POST",
        "/v1/subscriptions",
        201,
        json={"customer_id": alice["id"], "plan": "pro-monthly", "payment_method": "pm_card_visa"},
    )
    api.ok("POST", "/v1/sandbox/clock", json={"now": iso(parse(sub["current_period_end"]) + _dt.timedelta(hours=1))})
    assert api.ok("POST", "/v1/sandbox/run-due")["jobs"]["subscription_renewals"] == 0  # no answer
    assert made and made[0].status == "succeeded"  # ... but the gateway did charge
    cancelled = me.ok("POST", f"/v1/subscriptions/{sub['id']}/cancel")  # not held up by the outage
    assert cancelled["cancel_at_period_end"] is True
    renewed_end = cancelled["current_period_end"]  # B2: the period it is in, the renewed one
    assert cancelled["current_period_start"] == sub["current_period_end"] and renewed_end > sub["current_period_end"]
    [confirmation] = [
        n for n in api.all(f"/v1/customers/{alice['id']}/notices") if n["type"] == "cancellation_scheduled"
    ]
    assert parse(renewed_end).strftime("%d %B %Y, %H:%M UTC") in confirmation["subject"]

    answer = post_event(
        api.http,
        intent_event(
            "payment_intent.succeeded",
            made[0].payment_id,
            amount=2000,
            metadata={"idempotency_key": f"{sub['id']}:period-1:attempt-1"},
        ),
        "whsec_sandbox",
    )
    assert answer.status_code == 200, answer.text
    renewal = [p for p in api.all(f"/v1/customers/{alice['id']}/payments") if p["purpose"] == "renewal"]
    assert [p["status"] for p in renewal] == ["succeeded"]
    assert (renewal[0]["period_start"], renewal[0]["period_end"]) == (sub["current_period_end"], renewed_end)
    events = api.all("/v1/audit-events", params={"customer_id": alice["id"]})
    assert not [e for e in events if e["action"] == "payment.succeeded_without_effect"]
    assert api.ok("GET", f"/v1/subscriptions/{sub['id']}") == cancelled
    api.ok("POST", "/v1/sandbox/clock", json={"now": iso(parse(sub["current_period_end"]) + _dt.timedelta(days=40))})
    api.ok("POST", "/v1/sandbox/run-due")
    final = api.ok("GET", f"/v1/subscriptions/{sub['id']}")
    assert final["status"] == "canceled" and final["ended_at"] == renewed_end
    assert len([p for p in api.all(f"/v1/customers/{alice['id']}/payments") if p["purpose"] != "purchase"]) == 1
