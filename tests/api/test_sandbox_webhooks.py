"""The payment webhook in sandbox mode: Stripe's signature scheme (secret `whsec_sandbox` by default), each event
id applied once, events out of order, unknown objects stored and unknown types ignored. A purchase with
`pm_card_authenticationRequired` is left incomplete and pending until an event settles its PaymentIntent (B1)."""

from __future__ import annotations

import datetime as _dt
import time

import pytest

from tests.api.test_subscriptions import (
    access_of,
    at,
    buy,
    notice_types,
    payments_of,
    subscription,
)
from tests.api.test_trials import start_trial
from tests.conftest import (
    START,
    customer_headers,
    make_customer,
    make_plan,
    move_clock,
    ops_headers,
    run_due,
)
from tests.support.webhooks import (
    event,
    intent_event,
    payment_intent,
    post_event,
    signature,
)

SUCCEEDED = "payment_intent.succeeded"
FAILED = "payment_intent.payment_failed"


def pending_purchase(client) -> tuple[dict, dict, dict]:
    """A customer whose purchase awaits 3-D Secure: (customer, subscription, its pending payment)."""
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice, payment_method="pm_card_authenticationRequired")
    assert sub["status"] == "incomplete"
    [payment] = payments_of(client, alice)
    assert payment["status"] == "pending" and payment["gateway_payment_id"].startswith("pi_")
    return alice, sub, payment


def snapshot(client, customer: dict, sub: dict) -> tuple:
    return (
        subscription(client, sub["id"]),
        payments_of(client, customer),
        notice_types(client, customer),
        access_of(client, customer),
    )


def test_the_sandbox_signs_with_its_default_secret(settings):
    assert settings.stripe_webhook_secret == "whsec_sandbox"


def test_a_validly_signed_event_is_applied(client, settings):
    alice, sub, payment = pending_purchase(client)
    move_clock(client, at(START, _dt.timedelta(minutes=5)))
    reply = post_event(
        client, intent_event(SUCCEEDED, payment["gateway_payment_id"], amount=2000), settings.stripe_webhook_secret
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"received": True, "duplicate": False, "outcome": "applied"}
    active = subscription(client, sub["id"])
    assert active["status"] == "active" and active["current_period_start"] == "2030-01-15T12:05:00Z"
    assert payments_of(client, alice)[0]["status"] == "succeeded"


@pytest.mark.parametrize("how", ["wrong_secret", "stale", "future", "tampered", "missing", "garbage", "no_v1"])
def test_a_bad_signature_is_400_and_changes_nothing(client, settings, how):
    alice, sub, payment = pending_purchase(client)
    before = snapshot(client, alice, sub)
    evt = intent_event(SUCCEEDED, payment["gateway_payment_id"], amount=2000)
    secret, now = settings.stripe_webhook_secret, int(time.time())
    if how == "wrong_secret":
        reply = post_event(client, evt, "whsec_forged")
    elif how == "stale":
        reply = post_event(client, evt, secret, timestamp=now - 400)  # older than the 300 s tolerance
    elif how == "future":
        reply = post_event(client, evt, secret, timestamp=now + 600)  # dated 10 minutes ahead
    elif how == "tampered":  # signed for another payload
        reply = post_event(client, evt, secret, header=signature(b'{"id":"evt_other"}', secret))
    elif how == "missing":
        reply = client.post("/v1/webhooks/stripe", json=evt)
    elif how == "garbage":
        reply = post_event(client, evt, secret, header="not a signature")
    else:
        reply = post_event(client, evt, secret, header=f"t={now}")
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["status"] == 400 and reply.json()["code"] == "invalid_signature"
    assert snapshot(client, alice, sub) == before
    # The refused event was not recorded either: the same event, properly signed, is applied.
    good = post_event(client, evt, secret)
    assert good.status_code == 200 and good.json()["outcome"] == "applied"
    assert subscription(client, sub["id"])["status"] == "active"


def test_the_same_event_id_is_applied_once(client, settings):
    alice, sub, payment = pending_purchase(client)
    evt = intent_event(SUCCEEDED, payment["gateway_payment_id"], amount=2000)
    first = post_event(client, evt, settings.stripe_webhook_secret)
    assert first.status_code == 200 and first.json() == {"received": True, "duplicate": False, "outcome": "applied"}
    after_first = snapshot(client, alice, sub)
    move_clock(client, at(START, _dt.timedelta(hours=1)))
    again = post_event(client, evt, settings.stripe_webhook_secret)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    # Even with other content, an event id already seen is not applied again.
    replay = intent_event(FAILED, payment["gateway_payment_id"], event_id=evt["id"], amount=2000)
    third = post_event(client, replay, settings.stripe_webhook_secret)
    assert third.status_code == 200 and third.json()["duplicate"] is True
    assert snapshot(client, alice, sub) == after_first
    assert notice_types(client, alice) == ["receipt"]
    # A new event id about the same intent is processed, and finds it settled.
    other = post_event(
        client, intent_event(SUCCEEDED, payment["gateway_payment_id"], amount=2000), settings.stripe_webhook_secret
    )
    assert other.json() == {"received": True, "duplicate": False, "outcome": "already_applied"}
    assert snapshot(client, alice, sub) == after_first


def test_a_late_failure_after_a_success_changes_nothing(client, settings):
    alice, sub, payment = pending_purchase(client)
    intent = payment["gateway_payment_id"]
    assert (
        post_event(client, intent_event(SUCCEEDED, intent, amount=2000), settings.stripe_webhook_secret).json()[
            "outcome"
        ]
        == "applied"
    )
    before = snapshot(client, alice, sub)
    move_clock(client, at(START, _dt.timedelta(minutes=30)))
    late = post_event(client, intent_event(FAILED, intent, amount=2000), settings.stripe_webhook_secret)
    assert late.status_code == 200 and late.json()["duplicate"] is False
    assert snapshot(client, alice, sub) == before
    assert subscription(client, sub["id"])["status"] == "active"
    assert payments_of(client, alice)[0]["status"] == "succeeded"
    assert "payment_failed" not in notice_types(client, alice)


def test_a_late_success_after_a_failure_grants_nothing(client, settings):
    alice, sub, payment = pending_purchase(client)
    intent = payment["gateway_payment_id"]
    assert (
        post_event(client, intent_event(FAILED, intent, amount=2000), settings.stripe_webhook_secret).json()["outcome"]
        == "applied"
    )
    assert subscription(client, sub["id"])["status"] == "canceled"
    late = post_event(client, intent_event(SUCCEEDED, intent, amount=2000), settings.stripe_webhook_secret)
    assert late.status_code == 200
    ended = subscription(client, sub["id"])
    assert ended["status"] == "canceled" and ended["ended_reason"] == "payment_failed"
    assert ended["current_period_start"] is None
    assert access_of(client, alice)["has_access"] is False
    assert "receipt" not in notice_types(client, alice)


def test_an_event_for_an_unknown_payment_intent_is_stored_and_acknowledged(client, settings):
    alice, sub, _ = pending_purchase(client)
    before = snapshot(client, alice, sub)
    evt = intent_event(SUCCEEDED, "pi_unknown_0123456789", amount=2000)
    reply = post_event(client, evt, settings.stripe_webhook_secret)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"received": True, "duplicate": False, "outcome": "unknown_object"}
    assert post_event(client, evt, settings.stripe_webhook_secret).json()["duplicate"] is True  # it was stored
    assert snapshot(client, alice, sub) == before


@pytest.mark.parametrize("event_type", ["plan.created", "customer.created", "payment_intent.created"])
def test_an_unknown_event_type_is_ignored(client, settings, event_type):
    alice, sub, payment = pending_purchase(client)
    before = snapshot(client, alice, sub)
    evt = event(event_type, payment_intent(payment["gateway_payment_id"], status="succeeded", amount=2000))
    reply = post_event(client, evt, settings.stripe_webhook_secret)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"received": True, "duplicate": False, "outcome": "ignored"}
    assert snapshot(client, alice, sub) == before


def test_T5_T6_the_trial_ends_and_eligibility_goes_only_when_the_pending_purchase_is_paid(client, settings):
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    trial = start_trial(client, alice).json()
    sub = buy(client, alice, payment_method="pm_card_authenticationRequired")
    # Not paid yet: the trial runs on and gives access.
    running = client.get(f"/v1/trials/{trial['id']}", headers=ops_headers()).json()
    assert running["status"] == "active"
    assert access_of(client, alice)["source"] == "trial"
    twin = make_customer(client, "alice-2", email="ALICE@example.com")
    paid_at = "2030-01-16T09:00:00Z"
    move_clock(client, paid_at)
    [payment] = payments_of(client, alice)
    assert (
        post_event(
            client, intent_event(SUCCEEDED, payment["gateway_payment_id"], amount=2000), settings.stripe_webhook_secret
        ).json()["outcome"]
        == "applied"
    )
    forfeited = client.get(f"/v1/trials/{trial['id']}", headers=ops_headers()).json()
    assert forfeited["status"] == "forfeited" and forfeited["ended_at"] == paid_at
    active = subscription(client, sub["id"])
    assert (active["current_period_start"], active["current_period_end"]) == (paid_at, "2030-02-16T09:00:00Z")
    assert access_of(client, alice)["source"] == "subscription"
    refused = start_trial(client, twin)
    assert refused.status_code == 409 and refused.json()["code"] == "trial_not_eligible"


def test_T5_a_pending_purchase_that_failed_leaves_the_person_eligible(client, settings):
    alice, sub, payment = pending_purchase(client)
    post_event(client, intent_event(FAILED, payment["gateway_payment_id"], amount=2000), settings.stripe_webhook_secret)
    assert subscription(client, sub["id"])["status"] == "canceled"
    assert start_trial(client, alice).status_code == 201


@pytest.mark.parametrize("then_fix_method", [False, True], ids=["method_unchanged", "method_fixed"])
def test_B2_B5_a_late_success_of_a_failed_renewal_renews_it_and_is_not_charged_again(client, settings, then_fix_method):
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice)
    # The saved method needs the customer's authentication, which an off-session renewal cannot get.
    switched = client.post(
        f"/v1/subscriptions/{sub['id']}/payment-method",
        json={"payment_method": "pm_card_authenticationRequired"},
        headers=customer_headers("alice"),
    )
    assert switched.status_code == 200, switched.text
    move_clock(client, sub["current_period_end"])
    run_due(client)
    assert subscription(client, sub["id"])["status"] == "past_due"
    renewal = payments_of(client, alice)[0]
    assert (renewal["purpose"], renewal["status"], renewal["failure_code"]) == (
        "renewal",
        "failed",
        "authentication_required",
    )
    # Later the customer authenticates that PaymentIntent; Stripe reports that it succeeded.
    move_clock(client, at(sub["current_period_end"], _dt.timedelta(hours=5)))
    reply = post_event(
        client, intent_event(SUCCEEDED, renewal["gateway_payment_id"], amount=2000), settings.stripe_webhook_secret
    )
    assert reply.status_code == 200, reply.text
    if then_fix_method:
        assert (
            client.post(
                f"/v1/subscriptions/{sub['id']}/payment-method",
                json={"payment_method": "pm_card_visa"},
                headers=customer_headers("alice"),
            ).status_code
            == 200
        )
    for when in ("2030-02-16T12:00:00Z", "2030-02-18T12:00:00Z", "2030-02-22T12:00:00Z"):
        move_clock(client, when)
        run_due(client)
    # The period that began at the old period end is paid exactly once, and the subscription runs on.
    paid = [(p["purpose"], p["period_start"]) for p in payments_of(client, alice) if p["status"] == "succeeded"]
    assert len(paid) == 2, payments_of(client, alice)
    renewed = subscription(client, sub["id"])
    assert renewed["status"] == "active" and renewed["ended_reason"] is None
    assert (renewed["current_period_start"], renewed["current_period_end"]) == (
        "2030-02-15T12:00:00Z",
        "2030-03-15T12:00:00Z",
    )
    assert access_of(client, alice)["has_access"] is True


def test_B1_an_event_whose_metadata_holds_newlines_and_tabs_is_processed(client, settings):
    """B1 (review finding 7): Stripe allows any text in metadata values (a note typed in its dashboard); a signed
    event whose other metadata keys hold newlines or tabs is applied like any other, so a paid purchase is granted."""
    _alice, sub, payment = pending_purchase(client)
    evt = intent_event(SUCCEEDED, payment["gateway_payment_id"], amount=2000)
    evt["data"]["object"]["metadata"] = {
        "note": "line one\nline two",
        "where": "col\tcol\r\n",
        "idempotency_key": "not\nours",
    }
    reply = post_event(client, evt, settings.stripe_webhook_secret)
    assert reply.status_code == 200, reply.text
    assert reply.json()["outcome"] == "applied"
    assert subscription(client, sub["id"])["status"] == "active"


def test_an_event_whose_metadata_holds_nul_is_refused(client, settings):
    """NUL cannot be stored (PostgreSQL text/JSON refuses it): such an event is refused with 400, nothing changes."""
    _alice, sub, payment = pending_purchase(client)
    evt = intent_event(SUCCEEDED, payment["gateway_payment_id"], amount=2000)
    evt["data"]["object"]["metadata"] = {"note": "a\x00b"}
    reply = post_event(client, evt, settings.stripe_webhook_secret)
    assert reply.status_code == 400, reply.text
    assert subscription(client, sub["id"])["status"] == "incomplete"
