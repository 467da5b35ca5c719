"""B1 with Stripe's own library against the fake Stripe (see tests/api/test_stripe_payments.py): a purchase that
failed or was abandoned has its PaymentIntent cancelled at Stripe, so the customer can no longer complete it; a
cancellation that gets no answer is sent again by the job; a PaymentIntent that succeeded all the same (the
customer completed it before the cancellation reached Stripe) is refunded in full at Stripe, once, under a key
derived from the payment, and the customer is told."""

from __future__ import annotations

import datetime as _dt

import httpx
import pytest

from tests.api.test_stripe_payments import (  # noqa: F401 - fixtures
    audit,
    bought,
    client,
    deliver,
    fake,
    fake_stripe,
    link,
    open_service,
    payment,
    payments_of,
    refunds_of,
    setup_shop,
    stripe_events,
    subscription,
)
from tests.conftest import ManualWall, customer_headers, move_clock, ops_headers, run_due
from tests.support.webhooks import intent_event

FAILED = "payment_intent.payment_failed"
DAY = "2030-01-16T12:00:00Z"  # a day after START: an incomplete purchase has expired


def pending_purchase(client) -> tuple[dict, dict, dict]:
    [carol] = setup_shop(client, "carol")
    sub = bought(client, carol, "pm_card_authenticationRequired")
    assert sub["status"] == "incomplete"
    [pending] = payments_of(client, carol)
    return carol, sub, pending


def abandon(client, how: str, sub: dict, pending: dict) -> None:
    if how == "failed":  # Stripe reports the failure (e.g. the customer failed 3-D Secure)
        evt = intent_event(
            FAILED, pending["gateway_payment_id"], amount=pending["amount"], decline_code="authentication_failed"
        )
        assert deliver(client, evt)["outcome"] == "applied"
    elif how == "expired":
        move_clock(client, DAY)
        assert run_due(client)["incomplete_purchase_expiry"] == 1
    else:
        response = client.post(f"/v1/subscriptions/{sub['id']}/cancel", headers=customer_headers("carol"))
        assert response.status_code == 200, response.text
    assert subscription(client, sub["id"])["status"] == "canceled"


def authenticate(fake, sub: dict, pending: dict) -> None:
    """The customer completes 3-D Secure on the page (Stripe.js): Stripe takes the money."""
    fake.post(
        f"/v1/payment_intents/{pending['gateway_payment_id']}/_authenticate",
        client_secret=sub["client_secret"],
        success="true",
    )


def assert_refunded_at_stripe_once(client, fake, pending: dict) -> None:
    [made] = fake.get("/v1/refunds", limit=100)["data"]
    assert made["payment_intent"] == pending["gateway_payment_id"] and made["amount"] == pending["amount"]
    assert made["metadata"] == {"billing_refund_id": f"re_b1_{pending['id']}"}
    [correction] = refunds_of(client, pending["id"])
    assert (correction["id"], correction["source"], correction["status"], correction["gateway_refund_id"]) == (
        f"re_b1_{pending['id']}",
        "correction",
        "succeeded",
        made["id"],
    )
    settled = payment(client, pending["id"])
    assert settled["status"] == "succeeded" and settled["refunded_amount"] == settled["amount"]
    assert len(audit(client, "refund.correction_requested")) == 1
    notices = client.get(f"/v1/customers/{pending['customer_id']}/notices", headers=ops_headers()).json()["data"]
    assert [n["type"] for n in notices] == ["payment_refunded"]


@pytest.mark.parametrize("how", ["failed", "expired", "canceled"])
def test_B1_an_abandoned_purchase_is_cancelled_at_stripe_and_can_no_longer_succeed(client, fake, how):
    _carol, sub, pending = pending_purchase(client)
    assert fake.get(f"/v1/payment_intents/{pending['gateway_payment_id']}")["status"] == "requires_action"
    abandon(client, how, sub, pending)
    assert fake.get(f"/v1/payment_intents/{pending['gateway_payment_id']}")["status"] == "canceled"
    with pytest.raises(httpx.HTTPStatusError):
        authenticate(fake, sub, pending)  # too late: nothing can be taken any more
    assert fake.get("/v1/refunds", limit=100)["data"] == []
    assert run_due(client)["payment_cancellations"] == 0


@pytest.mark.parametrize("how", ["expired"])  # a failure event: the test below (the intent's state decides)
def test_B1_a_payment_completed_before_its_cancellation_is_refunded_in_full_at_stripe(client, fake, how):
    _carol, sub, pending = pending_purchase(client)
    authenticate(fake, sub, pending)  # Stripe has the money; its event has not reached the service yet
    abandon(client, how, sub, pending)  # the cancellation finds the PaymentIntent succeeded
    assert_refunded_at_stripe_once(client, fake, pending)
    assert subscription(client, sub["id"])["current_period_start"] is None
    # Stripe's own events then arrive: the success is settled already, the refund is ours.
    [succeeded] = stripe_events(fake, "payment_intent.succeeded")
    assert deliver(client, succeeded)["outcome"] == "already_applied"
    for refunded in stripe_events(fake, "charge.refunded"):
        assert deliver(client, refunded)["outcome"] == "already_applied"
    run_due(client)
    assert_refunded_at_stripe_once(client, fake, pending)


def test_B1_a_stale_failure_event_after_the_customer_s_retry_succeeded_grants_the_purchase(client, fake):
    """B1 (review finding 2): the retry on the same PaymentIntent succeeded at Stripe, and the first attempt's
    payment_failed arrives first. The cancellation Stripe answers `succeeded`: the purchase is paid and starts;
    nothing is refunded at Stripe, and no failure is told."""
    _carol, sub, pending = pending_purchase(client)
    authenticate(fake, sub, pending)
    stale = intent_event(
        FAILED, pending["gateway_payment_id"], amount=pending["amount"], decline_code="authentication_failed"
    )
    assert deliver(client, stale)["outcome"] == "succeeded_at_gateway"
    [succeeded] = stripe_events(fake, "payment_intent.succeeded")
    assert deliver(client, succeeded)["outcome"] == "already_applied"
    run_due(client)
    assert subscription(client, sub["id"])["status"] == "active"
    assert payment(client, pending["id"])["status"] == "succeeded"
    assert payment(client, pending["id"])["refunded_amount"] == 0
    assert fake.get("/v1/refunds", limit=100)["data"] == [] and refunds_of(client, pending["id"]) == []
    notices = client.get(f"/v1/customers/{pending['customer_id']}/notices", headers=ops_headers()).json()["data"]
    assert "payment_failed" not in [n["type"] for n in notices] and "payment_refunded" not in [
        n["type"] for n in notices
    ]


def test_B1_a_cancellation_stripe_never_got_is_retried_and_a_success_meanwhile_is_refunded(open_service, fake, link):
    wall = ManualWall()
    client = open_service(link.url, wall)
    _carol, sub, pending = pending_purchase(client)
    cancel_path = f"/v1/payment_intents/{pending['gateway_payment_id']}/cancel"
    link.fault = lambda method, path: "drop" if (method, path) == ("POST", cancel_path) else "pass"
    abandon(client, "failed", sub, pending)
    assert link.posts(cancel_path) and all(call[3] == "dropped" for call in link.posts(cancel_path))
    assert fake.get(f"/v1/payment_intents/{pending['gateway_payment_id']}")["status"] == "requires_action"
    # Meanwhile the customer completes it, and Stripe reports the success: it bought nothing, so it is refunded.
    authenticate(fake, sub, pending)
    [succeeded] = stripe_events(fake, "payment_intent.succeeded")
    assert deliver(client, succeeded)["outcome"] == "refunded_late_success"
    assert_refunded_at_stripe_once(client, fake, pending)
    assert link.posts("/v1/refunds")[-1][2:4] == (f"re_b1_{pending['id']}", "passed")
    # The cancellation is still due (its mark survived): sent again once its lease has run out, it finds the
    # PaymentIntent succeeded and settled, and refunds nothing more.
    link.fault = lambda method, path: "pass"
    assert run_due(client)["payment_cancellations"] == 0
    wall.offset = _dt.timedelta(minutes=5)
    assert run_due(client)["payment_cancellations"] == 1
    assert link.posts(cancel_path)[-1][2:4] == (f"cancel:{pending['id']}", "passed")
    wall.offset = _dt.timedelta(minutes=15)
    assert run_due(client)["payment_cancellations"] == 0
    assert_refunded_at_stripe_once(client, fake, pending)
