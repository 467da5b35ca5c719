"""B1 corrections in sandbox mode, through HTTP and signed webhooks: a purchase that fails or is abandoned (a
`payment_intent.payment_failed`, the expiry job, a cancellation) has its PaymentIntent cancelled at the gateway,
durably (a cancellation that gets no answer is sent again by the `payment_cancellations` job); a payment that
succeeds all the same bought nothing and is refunded in full at once, automatically, once (a correction by the
system, not an R2 refund), with a `payment_refunded` notice and an audit event. The same with Stripe's own library
against the fake Stripe: tests/api/test_stripe_b1_corrections.py."""

from __future__ import annotations

import datetime as _dt

import pytest
from fastapi.testclient import TestClient

from app.gateways.base import GatewayError, GatewayUnavailable
from tests.api.test_subscriptions import access_of, at, buy, cancel, notice_types, payments_of, subscription
from tests.conftest import START, ManualWall, make_customer, make_plan, make_settings, move_clock, ops_headers, run_due
from tests.support.webhooks import intent_event, post_event

SUCCEEDED = "payment_intent.succeeded"
FAILED = "payment_intent.payment_failed"
DAY = _dt.timedelta(days=1)


class Gateway:
    """The sandbox gateway, recording the cancellations asked of it; `cancel_down` / `refund_down`: those calls
    get no answer (the gateway unreachable); `cancel_refused`: cancellations are refused (a `GatewayError`)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.cancel_down = False
        self.cancel_refused = False
        self.refund_down = False
        self.cancels: list[tuple[str, str]] = []
        self.refunds: list[tuple[str, int, str]] = []

    async def cancel_payment(self, payment_id: str, idempotency_key: str):
        self.cancels.append((payment_id, idempotency_key))
        if self.cancel_down:
            raise GatewayUnavailable("the sandbox could not be reached")
        if self.cancel_refused:
            raise GatewayError("No such payment_intent (a request problem, not an outage)")
        return await self.inner.cancel_payment(payment_id, idempotency_key)

    async def refund(self, payment_id: str, amount: int, idempotency_key: str):
        self.refunds.append((payment_id, amount, idempotency_key))
        if self.refund_down:
            raise GatewayUnavailable("the sandbox could not be reached")
        return await self.inner.refund(payment_id, amount, idempotency_key)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


@pytest.fixture
def wall() -> ManualWall:
    return ManualWall()


@pytest.fixture
def service(clean_db: str, wall: ManualWall):
    """(client, recording gateway, webhook secret) of a sandbox service whose real clock the test moves."""
    from app.main import create_app

    settings = make_settings(clean_db)
    app = create_app(settings, system_clock=wall)
    gateway = app.state.ctx.gateway = Gateway(app.state.ctx.gateway)
    with TestClient(app, raise_server_exceptions=False) as client:
        move_clock(client, START)
        yield client, gateway, settings.stripe_webhook_secret


def pending_purchase(client) -> tuple[dict, dict, dict]:
    """A customer whose purchase awaits 3-D Secure: (customer, subscription, its pending payment)."""
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice, payment_method="pm_card_authenticationRequired")
    assert sub["status"] == "incomplete"
    [payment] = payments_of(client, alice)
    assert payment["status"] == "pending"
    return alice, sub, payment


def send(client, secret: str, event_type: str, intent: str, **fields) -> dict:
    reply = post_event(client, intent_event(event_type, intent, amount=2000, **fields), secret)
    assert reply.status_code == 200, reply.text
    return reply.json()


def refunds_of(client, payment_id: str) -> list[dict]:
    response = client.get(f"/v1/payments/{payment_id}/refunds", headers=ops_headers())
    assert response.status_code == 200, response.text
    return response.json()["data"]


def payment(client, payment_id: str) -> dict:
    response = client.get(f"/v1/payments/{payment_id}", headers=ops_headers())
    assert response.status_code == 200, response.text
    return response.json()


def audit(client, action: str) -> list[dict]:
    response = client.get("/v1/audit-events", params={"action": action, "limit": 100}, headers=ops_headers())
    assert response.status_code == 200, response.text
    return response.json()["data"]


def notices_of(client, customer: dict, kind: str) -> list[dict]:
    response = client.get(f"/v1/customers/{customer['id']}/notices", headers=ops_headers())
    assert response.status_code == 200, response.text
    return [n for n in response.json()["data"] if n["type"] == kind]


def abandon(client, secret: str, how: str, sub: dict, payment: dict) -> None:
    """B1: the pending purchase fails (its payment_failed event), expires (a day on) or is cancelled."""
    if how == "failed":
        assert send(client, secret, FAILED, payment["gateway_payment_id"])["outcome"] == "applied"
    elif how == "expired":
        move_clock(client, at(START, DAY))
        assert run_due(client)["incomplete_purchase_expiry"] == 1
    elif how == "terminated":  # R3: the account is terminated; the job cancels the PaymentIntent
        response = client.post(
            f"/v1/customers/{sub['customer_id']}/terminate", json={"reason": "terms violation"}, headers=ops_headers()
        )
        assert response.status_code == 200, response.text
        assert run_due(client)["payment_cancellations"] == 1
    else:
        assert cancel(client, sub).status_code == 200
    assert subscription(client, sub["id"])["status"] == "canceled"


def assert_refunded_once(client, customer: dict, sub: dict, paid: dict) -> None:
    """The payment is recorded succeeded, refunded in full by one correction; nothing granted; the customer told."""
    now = payment(client, paid["id"])
    assert now["status"] == "succeeded" and now["refunded_amount"] == now["amount"] == 2000
    [correction] = refunds_of(client, paid["id"])
    assert (correction["amount"], correction["source"], correction["created_by"], correction["status"]) == (
        2000,
        "correction",
        "system",
        "succeeded",
    )
    assert correction["reason"].startswith("B1 correction")
    assert correction["gateway_refund_id"]
    ended = subscription(client, sub["id"])
    assert ended["status"] == "canceled" and ended["current_period_start"] is None
    assert access_of(client, customer)["has_access"] is False
    assert "receipt" not in notice_types(client, customer)
    [notice] = notices_of(client, customer, "payment_refunded")
    assert "20.00 USD" in notice["body"] and "refund" in notice["subject"].lower()
    [event] = audit(client, "refund.correction_requested")
    assert event["subject_id"] == correction["id"] and event["actor"] == "system"


@pytest.mark.parametrize("how", ["failed", "expired", "canceled", "terminated"])
def test_B1_an_abandoned_purchase_is_cancelled_at_the_gateway(service, how):
    client, gateway, secret = service
    _alice, sub, pending = pending_purchase(client)
    assert gateway.cancels == []
    abandon(client, secret, how, sub, pending)
    assert gateway.cancels == [(pending["gateway_payment_id"], f"cancel:{pending['id']}")]
    assert run_due(client)["payment_cancellations"] == 0  # confirmed: nothing left to send
    assert len(gateway.cancels) == 1


@pytest.mark.parametrize("how", ["failed", "expired", "canceled", "terminated"])
def test_B1_a_success_after_the_purchase_was_abandoned_is_refunded_in_full_once(service, how):
    client, gateway, secret = service
    alice, sub, pending = pending_purchase(client)
    abandon(client, secret, how, sub, pending)
    # The customer completed the payment before the cancellation reached the gateway: Stripe reports the success.
    late = intent_event(SUCCEEDED, pending["gateway_payment_id"], amount=2000)
    reply = post_event(client, late, secret)
    assert reply.status_code == 200 and reply.json() == {
        "received": True,
        "duplicate": False,
        "outcome": "refunded_late_success",
    }, reply.text
    assert_refunded_once(client, alice, sub, pending)
    assert gateway.refunds == [(pending["gateway_payment_id"], 2000, f"re_b1_{pending['id']}")]
    # The same delivery again, another event for the same intent, the jobs: nothing more.
    assert post_event(client, late, secret).json()["duplicate"] is True
    assert send(client, secret, SUCCEEDED, pending["gateway_payment_id"])["outcome"] == "already_applied"
    run_due(client)
    assert_refunded_once(client, alice, sub, pending)
    assert len(gateway.refunds) == 1
    if how == "terminated":
        return  # the account cannot buy again (R3)
    # Buying again charges once, for a subscription that starts.
    assert buy(client, alice)["status"] == "active"
    assert [p["status"] for p in payments_of(client, alice)] == ["succeeded", "succeeded"]
    assert access_of(client, alice)["has_access"] is True


def test_B1_a_cancellation_that_got_no_answer_is_sent_again_by_the_job(service, wall):
    client, gateway, secret = service
    _alice, sub, pending = pending_purchase(client)
    gateway.cancel_down = True
    abandon(client, secret, "failed", sub, pending)
    assert len(gateway.cancels) == 1
    assert run_due(client)["payment_cancellations"] == 0  # its lease holds it for 5 minutes of real time
    assert len(gateway.cancels) == 1
    wall.offset = _dt.timedelta(minutes=5)
    assert run_due(client)["payment_cancellations"] == 0  # still no answer: kept, tried again later
    assert len(gateway.cancels) == 2
    gateway.cancel_down = False
    wall.offset = _dt.timedelta(minutes=10)
    assert run_due(client)["payment_cancellations"] == 1
    assert gateway.cancels == [(pending["gateway_payment_id"], f"cancel:{pending['id']}")] * 3
    wall.offset = _dt.timedelta(minutes=20)
    assert run_due(client)["payment_cancellations"] == 0
    assert len(gateway.cancels) == 3
    assert payment(client, pending["id"])["status"] == "failed"


def test_B1_a_correction_refund_without_an_answer_is_retried_and_made_once(service, wall):
    client, gateway, secret = service
    alice, sub, pending = pending_purchase(client)
    abandon(client, secret, "failed", sub, pending)
    gateway.refund_down = True
    assert send(client, secret, SUCCEEDED, pending["gateway_payment_id"])["outcome"] == "refunded_late_success"
    [waiting] = refunds_of(client, pending["id"])
    assert (waiting["status"], waiting["source"], waiting["amount"]) == ("pending", "correction", 2000)
    assert payment(client, pending["id"])["refunded_amount"] == 2000  # reserved: no other refund can exceed it
    over = client.post(
        f"/v1/payments/{pending['id']}/refunds", json={"amount": 1, "reason": "goodwill"}, headers=ops_headers()
    )
    assert over.status_code == 422 and over.json()["code"] == "refund_exceeds_payment"
    gateway.refund_down = False
    wall.offset = _dt.timedelta(minutes=5)
    assert run_due(client)["refund_retries"] == 1
    assert run_due(client)["refund_retries"] == 0
    assert_refunded_once(client, alice, sub, pending)
    assert [key for _, _, key in gateway.refunds] == [f"re_b1_{pending['id']}"] * 2  # the same key: one refund


def test_B1_R2_a_renewal_that_succeeds_after_the_end_is_booked_for_ops_not_refunded(service):
    """B1 refunds a purchase that no longer waits for its payment; a renewal charge that renews nothing stays
    booked for ops (R2), as the policy function `late_success` decides."""
    client, gateway, secret = service
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice)
    client.post(
        f"/v1/subscriptions/{sub['id']}/payment-method",
        json={"payment_method": "pm_card_authenticationRequired"},
        headers={"Authorization": ops_headers()["Authorization"]},
    )
    for days in (31, 32, 34, 38):  # the renewal fails, then every retry: the subscription ends
        move_clock(client, at(START, days * DAY))
        run_due(client)
    assert subscription(client, sub["id"])["status"] == "canceled"
    renewal = next(p for p in payments_of(client, alice) if p["purpose"] == "renewal")
    assert send(client, secret, SUCCEEDED, renewal["gateway_payment_id"])["outcome"] == "recorded_late_success"
    assert payment(client, renewal["id"])["status"] == "succeeded"
    assert refunds_of(client, renewal["id"]) == [] and gateway.refunds == []
    assert notices_of(client, alice, "payment_refunded") == []


def test_B1_a_stale_failure_event_after_the_retry_succeeded_at_the_gateway_grants_the_purchase(service):
    """B1 (review finding 2): the customer's first 3-D Secure attempt fails, their retry on the same PaymentIntent
    succeeds at the gateway, and Stripe delivers the first attempt's payment_failed before the success. The
    intent's state decides, not the order of delivery: the purchase is paid and starts; nothing is refunded and
    the customer is told of no failure."""
    client, gateway, secret = service
    alice, sub, pending = pending_purchase(client)
    intent = pending["gateway_payment_id"]
    client.portal.call(gateway.complete_action, intent)  # the retry succeeded at the gateway (Stripe.js)
    stale = send(client, secret, FAILED, intent, decline_code="authentication_failed")
    assert stale["outcome"] == "succeeded_at_gateway"
    assert send(client, secret, SUCCEEDED, intent)["outcome"] == "already_applied"
    run_due(client)
    started = subscription(client, sub["id"])
    assert started["status"] == "active" and started["current_period_start"] is not None
    assert payment(client, pending["id"])["status"] == "succeeded"
    assert payment(client, pending["id"])["refunded_amount"] == 0
    assert refunds_of(client, pending["id"]) == [] and gateway.refunds == []
    assert access_of(client, alice)["has_access"] is True
    types = notice_types(client, alice)
    assert "payment_failed" not in types and "payment_refunded" not in types and "receipt" in types
    assert audit(client, "refund.correction_requested") == []


def test_B1_a_failure_event_cancels_the_intent_before_failing_the_purchase(service):
    """B1: a purchase is failed by its payment_failed only once the gateway has cancelled its PaymentIntent (one
    call, under the payment's cancellation key); a success reported after that is a B1 correction."""
    client, gateway, secret = service
    _alice, sub, pending = pending_purchase(client)
    intent = pending["gateway_payment_id"]
    assert send(client, secret, FAILED, intent)["outcome"] == "applied"
    assert gateway.cancels == [(intent, f"cancel:{pending['id']}")]
    assert subscription(client, sub["id"])["status"] == "canceled"
    assert payment(client, pending["id"])["status"] == "failed"
    assert run_due(client)["payment_cancellations"] == 0 and len(gateway.cancels) == 1


def _dashboard_refund_event(paid: dict, refund_id: str, amount: int) -> dict:
    """Stripe's `charge.refunded` for a refund made in its dashboard (no metadata of ours)."""
    from tests.support.webhooks import event

    pi = paid["gateway_payment_id"]
    refund = {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "currency": paid["currency"],
        "status": "succeeded",
        "metadata": {},
        "payment_intent": pi,
        "charge": "ch_dashboard",
    }
    return event(
        "charge.refunded",
        {
            "id": "ch_dashboard",
            "object": "charge",
            "amount": paid["amount"],
            "amount_refunded": amount,
            "currency": paid["currency"],
            "payment_intent": pi,
            "refunded": amount >= paid["amount"],
            "metadata": {},
            "refunds": {
                "object": "list",
                "data": [refund],
                "has_more": False,
                "url": "/v1/charges/ch_dashboard/refunds",
            },
        },
    )


def test_R2_a_dashboard_refund_is_recorded_while_a_pending_refund_of_ours_is_reserved(service, wall):
    """R2 (review finding 8): paid 2000; an ops refund of 1500 got no answer from the gateway (pending, reserved);
    staff refund 1000 in Stripe's dashboard. The `charge.refunded` is a fact: 200, recorded. The 1500 can no longer
    be made (only 1000 is left at the gateway): it is failed with its reason, flagged in the audit log, its
    reservation released, and the retry job never sends it again."""
    client, gateway, secret = service
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    buy(client, alice)
    [paid] = payments_of(client, alice)
    gateway.refund_down = True
    pending = client.post(
        f"/v1/payments/{paid['id']}/refunds", json={"amount": 1500, "reason": "goodwill"}, headers=ops_headers()
    )
    assert pending.status_code in (201, 202), pending.text
    [ours] = refunds_of(client, paid["id"])
    assert ours["status"] == "pending" and payment(client, paid["id"])["refunded_amount"] == 1500
    gateway.refund_down = False
    made = client.portal.call(gateway.inner.refund, paid["gateway_payment_id"], 1000, "dashboard-1")
    assert made.status == "succeeded"  # the sandbox's books: 1000 refunded, 1000 left
    reply = post_event(client, _dashboard_refund_event(paid, made.refund_id, 1000), secret)
    assert reply.status_code == 200 and reply.json()["outcome"] == "applied", reply.text
    by_source = {r["source"]: r for r in refunds_of(client, paid["id"])}
    assert (by_source["gateway"]["amount"], by_source["gateway"]["status"]) == (1000, "succeeded")
    released = by_source[ours["source"]]
    assert released["id"] == ours["id"] and released["status"] == "failed"
    assert payment(client, paid["id"])["refunded_amount"] == 1000
    [flag] = audit(client, "refund.failed")
    assert flag["subject_id"] == ours["id"] and "released" in str(flag)
    [recorded] = audit(client, "refund.recorded_from_gateway")
    assert ours["id"] in str(recorded)
    sent = len(gateway.refunds)
    wall.offset = _dt.timedelta(minutes=30)
    run_due(client)
    assert len(gateway.refunds) == sent  # the released refund is never sent again
    # The same event again changes nothing.
    again = post_event(client, _dashboard_refund_event(paid, made.refund_id, 1000), secret)
    assert again.status_code == 200 and again.json()["outcome"] == "already_applied"


def test_R2_a_dashboard_refund_that_still_leaves_room_keeps_our_pending_refund(service, wall):
    """R2: paid 2000, ours 500 pending, 1000 made in the dashboard: both fit; ours stays pending and the retry job
    sends it once the gateway answers again."""
    client, gateway, secret = service
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    buy(client, alice)
    [paid] = payments_of(client, alice)
    gateway.refund_down = True
    client.post(f"/v1/payments/{paid['id']}/refunds", json={"amount": 500, "reason": "goodwill"}, headers=ops_headers())
    gateway.refund_down = False
    made = client.portal.call(gateway.inner.refund, paid["gateway_payment_id"], 1000, "dashboard-1")
    reply = post_event(client, _dashboard_refund_event(paid, made.refund_id, 1000), secret)
    assert reply.status_code == 200 and reply.json()["outcome"] == "applied", reply.text
    assert payment(client, paid["id"])["refunded_amount"] == 1500
    wall.offset = _dt.timedelta(minutes=30)
    run_due(client)
    assert sorted((r["amount"], r["status"]) for r in refunds_of(client, paid["id"])) == [
        (500, "succeeded"),
        (1000, "succeeded"),
    ]
    assert payment(client, paid["id"])["refunded_amount"] == 1500


def cancellations_gauge(client) -> float:
    [line] = [
        line
        for line in client.get("/metrics").text.splitlines()
        if line.startswith('billing_due_work{job="payment_cancellations"}')
    ]
    return float(line.split()[-1])


def test_B1_a_cancellation_the_gateway_keeps_refusing_is_given_up_after_the_cap_and_audited(service, wall):
    """B1 (review finding 10b): a cancellation the gateway refuses (a GatewayError, not an outage) is tried again
    every 5 minutes, shown by billing_due_work{job="payment_cancellations"}, and given up after MAX_REFUSALS
    refusals with `payment.cancel_failed` in the audit log for ops; then nothing is sent any more."""
    from app.payments.corrections import MAX_REFUSALS

    client, gateway, secret = service
    _alice, sub, pending = pending_purchase(client)
    assert cancellations_gauge(client) == 0
    gateway.cancel_refused = True
    abandon(client, secret, "canceled", sub, pending)  # the first try, just after the cancellation commits
    assert len(gateway.cancels) == 1
    wall.offset = _dt.timedelta(seconds=30)  # past the gauges' 15-second refresh
    assert cancellations_gauge(client) == 1
    for attempt in range(2, MAX_REFUSALS + 1):
        wall.offset = _dt.timedelta(minutes=5 * attempt)
        run_due(client)
        assert len(gateway.cancels) == attempt
        if attempt < MAX_REFUSALS:
            assert audit(client, "payment.cancel_failed") == []
    [given_up] = audit(client, "payment.cancel_failed")
    assert given_up["subject_id"] == pending["id"] and given_up["actor"] == "system"
    assert "refused" in str(given_up)
    wall.offset = _dt.timedelta(hours=24)
    assert run_due(client)["payment_cancellations"] == 0
    assert len(gateway.cancels) == MAX_REFUSALS  # stopped
    assert cancellations_gauge(client) == 0


def test_B1_a_refused_cancellation_that_later_goes_through_is_not_audited_as_given_up(service, wall):
    """B1: refusals below the cap are only retried; a cancellation the gateway then accepts is done, not flagged."""
    client, gateway, secret = service
    _alice, sub, pending = pending_purchase(client)
    gateway.cancel_refused = True
    abandon(client, secret, "canceled", sub, pending)
    gateway.cancel_refused = False
    wall.offset = _dt.timedelta(minutes=5)
    assert run_due(client)["payment_cancellations"] == 1
    assert audit(client, "payment.cancel_failed") == [] and cancellations_gauge(client) == 0
