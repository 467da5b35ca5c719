"""Immediate upgrades (C4) through HTTP: POST /v1/subscriptions/{id}/change with when=now, charged through the
purchase's reserve / gateway / settle path; a decline or an abandoned payment changes nothing; a payment needing
the customer's action completes by webhook or expires (23 h, or the period end if sooner) with its PaymentIntent
cancelled; a late success for an abandoned upgrade is refunded automatically (B1).

The clock starts at START = 2030-01-15T12:00:00Z in every test."""

from __future__ import annotations

import pytest

from tests.api.test_plan_changes import FIRST_END, audit, change, events_of, refused, withdraw
from tests.api.test_subscriptions import (
    access_of,
    buy,
    cancel,
    client_with,
    notice_types,
    payments_of,
    subscription,
)
from tests.conftest import customer_headers, make_customer, make_plan, make_settings, move_clock, ops_headers, run_due
from tests.support.webhooks import intent_event, post_event

TEN_DAYS_IN = "2030-01-25T12:00:00Z"


@pytest.fixture
def plans(client):
    make_plan(client, "pro-monthly", amount=2000)
    make_plan(client, "pro-yearly", amount=20000, interval="year")  # 20000 a year: less than 2000 x 12
    make_plan(client, "enterprise-monthly", amount=9000, tier="enterprise")
    make_plan(client, "enterprise-yearly", amount=90000, interval="year", tier="enterprise")
    make_plan(client, "top-yearly", amount=200000, interval="year", tier="enterprise")


@pytest.fixture
def alice(client, plans):
    return make_customer(client, "alice")


class CancelRecorder:
    """The sandbox gateway, noting the PaymentIntents it is asked to cancel (B1)."""

    def __init__(self, inner) -> None:
        self.inner, self.cancelled = inner, []

    async def cancel_payment(self, payment_id: str, idempotency_key: str):
        self.cancelled.append(payment_id)
        return await self.inner.cancel_payment(payment_id, idempotency_key)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


@pytest.fixture
def gateway(client) -> CancelRecorder:
    recorder = client.app.state.ctx.gateway = CancelRecorder(client.app.state.ctx.gateway)
    return recorder


def use_method(client, sub: dict, method: str) -> None:
    response = client.post(
        f"/v1/subscriptions/{sub['id']}/payment-method",
        json={"payment_method": method},
        headers=customer_headers("alice"),
    )
    assert response.status_code == 200, response.text


def test_C4_upgrade_now_charges_the_full_price_and_starts_a_new_period(client, alice):
    sub = buy(client, alice)
    move_clock(client, TEN_DAYS_IN)
    response = change(client, sub, "enterprise-monthly", when="now")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["plan"] == "enterprise-monthly" and body["price"] == {"amount": 9000, "currency": "usd"}
    assert body["status"] == "active" and body["pending_change"] is None
    assert (body["current_period_start"], body["current_period_end"]) == (TEN_DAYS_IN, "2030-02-25T12:00:00Z")
    # R1: 21 whole days of the 31-day period forfeited, worth 2000 x 21 / 31 = 1354 (rounded down), not refunded.
    assert body["forfeited_days"] == 21 and body["forfeited_value"] == {"amount": 1354, "currency": "usd"}
    upgrade, purchase = payments_of(client, alice)
    assert upgrade["purpose"] == "upgrade" and upgrade["status"] == "succeeded" and upgrade["amount"] == 9000
    assert (upgrade["period_start"], upgrade["period_end"]) == (TEN_DAYS_IN, "2030-02-25T12:00:00Z")
    assert purchase["refunded_amount"] == 0
    assert "plan_changed" in notice_types(client, alice)
    [entry] = [e for e in audit(client, alice) if e["action"] == "subscription.plan_changed"]
    assert entry["policy_version"] == "2026-11-01" and entry["data"]["forfeited_days"] == 21
    assert [e for e in events_of(client, alice) if e["type"] == "subscription.plan_changed"]
    assert access_of(client, alice)["plan"] == "enterprise-monthly"
    # B4: the payment's time is the new anchor.
    move_clock(client, "2030-02-25T12:00:00Z")
    run_due(client)
    renewed = subscription(client, sub["id"])
    assert renewed["current_period_end"] == "2030-03-25T12:00:00Z" and payments_of(client, alice)[0]["amount"] == 9000


def test_C4_monthly_to_yearly_counts_the_yearly_value(client, alice):
    sub = buy(client, alice)
    refused(change(client, sub, "pro-yearly", when="now"), "not_an_upgrade")  # 20000 < 2000 x 12
    response = change(client, sub, "enterprise-yearly", when="now")
    assert response.status_code == 200, response.text
    assert response.json()["current_period_end"] == "2031-01-15T12:00:00Z"


def test_C4_a_decline_changes_nothing_and_keeps_a_scheduled_change(client, alice):
    sub = buy(client, alice)
    assert change(client, sub, "pro-yearly").status_code == 200  # C3, pending
    use_method(client, sub, "pm_card_chargeDeclined")
    response = change(client, sub, "enterprise-monthly", when="now")
    assert response.status_code == 402, response.text
    assert response.json()["code"] == "card_declined"
    after = subscription(client, sub["id"])
    assert after["plan"] == "pro-monthly" and after["current_period_end"] == FIRST_END
    assert after["pending_change"]["plan"] == "pro-yearly"  # the C3 change still waits
    failed = payments_of(client, alice)[0]
    assert failed["purpose"] == "upgrade" and failed["status"] == "failed"
    assert "plan_changed" not in notice_types(client, alice)


def test_C4_a_paid_upgrade_withdraws_a_scheduled_change_and_cancellation(client, alice):
    sub = buy(client, alice)
    assert change(client, sub, "pro-yearly").status_code == 200
    response = change(client, sub, "enterprise-monthly", when="now")
    assert response.status_code == 200, response.text
    assert subscription(client, sub["id"])["pending_change"] is None
    assert cancel(client, sub).status_code == 200
    response = change(client, sub, "top-yearly", when="now")
    assert response.status_code == 200, response.text
    assert response.json()["cancel_at_period_end"] is False


def test_C4_needing_action_waits_then_the_webhook_completes_it(client, alice, settings):
    sub = buy(client, alice)
    use_method(client, sub, "pm_card_authenticationRequired")
    move_clock(client, TEN_DAYS_IN)
    response = change(client, sub, "enterprise-monthly", when="now")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["plan"] == "pro-monthly" and body["current_period_end"] == FIRST_END  # nothing changed yet
    pending = body["pending_change"]
    assert pending["plan"] == "enterprise-monthly" and pending["price"] == {"amount": 9000, "currency": "usd"}
    assert pending["effective_at"] is None and pending["expires_at"] == "2030-01-26T11:00:00Z"  # 23 h
    assert pending["client_secret"]
    assert subscription(client, sub["id"])["pending_change"]["client_secret"] == pending["client_secret"]
    refused(change(client, sub, "pro-yearly"), "charge_in_progress")  # another change waits for this one
    payment = payments_of(client, alice)[0]
    assert payment["status"] == "pending" and payment["purpose"] == "upgrade"
    move_clock(client, "2030-01-25T13:00:00Z")
    reply = post_event(
        client,
        intent_event("payment_intent.succeeded", payment["gateway_payment_id"], amount=9000),
        settings.stripe_webhook_secret,
    )
    assert reply.status_code == 200, reply.text
    done = subscription(client, sub["id"])
    assert done["plan"] == "enterprise-monthly" and done["pending_change"] is None
    assert (done["current_period_start"], done["current_period_end"]) == (
        "2030-01-25T13:00:00Z",
        "2030-02-25T13:00:00Z",
    )
    assert payments_of(client, alice)[0]["status"] == "succeeded"


def test_C4_B1_an_abandoned_upgrade_expires_its_intent_is_cancelled_and_a_late_success_is_refunded(
    client, alice, settings, gateway
):
    sub = buy(client, alice)
    use_method(client, sub, "pm_card_authenticationRequired")
    move_clock(client, "2030-02-15T00:00:00Z")
    response = change(client, sub, "enterprise-monthly", when="now")
    assert response.status_code == 200, response.text
    assert response.json()["pending_change"]["expires_at"] == FIRST_END  # the period end comes before 23 h
    payment = payments_of(client, alice)[0]
    use_method(client, sub, "pm_card_visa")
    move_clock(client, FIRST_END)
    run_due(client)
    # Expired: the old plan renewed as if nothing had been asked.
    after = subscription(client, sub["id"])
    assert after["plan"] == "pro-monthly" and after["pending_change"] is None
    assert after["current_period_end"] == "2030-03-15T12:00:00Z"
    by_id = {p["id"]: p for p in payments_of(client, alice)}
    assert by_id[payment["id"]]["status"] == "failed" and by_id[payment["id"]]["failure_code"] == "expired"
    assert payments_of(client, alice)[0]["purpose"] == "renewal" and payments_of(client, alice)[0]["amount"] == 2000
    assert gateway.cancelled == [payment["gateway_payment_id"]]  # B1: it can no longer succeed
    # The customer completes it late all the same: it bought nothing and is refunded in full at once (B1).
    reply = post_event(
        client,
        intent_event("payment_intent.succeeded", payment["gateway_payment_id"], amount=9000),
        settings.stripe_webhook_secret,
    )
    assert reply.status_code == 200, reply.text
    late = {p["id"]: p for p in payments_of(client, alice)}[payment["id"]]
    assert late["status"] == "succeeded" and late["refunded_amount"] == 9000
    assert subscription(client, sub["id"])["plan"] == "pro-monthly"


def test_C4_withdrawing_or_cancelling_gives_up_a_waiting_upgrade(client, alice, gateway):
    sub = buy(client, alice)
    use_method(client, sub, "pm_card_authenticationRequired")
    assert change(client, sub, "enterprise-monthly", when="now").json()["pending_change"]["client_secret"]
    response = withdraw(client, sub)
    assert response.status_code == 200 and response.json()["pending_change"] is None, response.text
    first = payments_of(client, alice)[0]
    assert first["status"] == "failed" and first["failure_code"] == "withdrawn"
    assert change(client, sub, "enterprise-monthly", when="now").status_code == 200
    assert cancel(client, sub).status_code == 200
    second = payments_of(client, alice)[0]
    assert second["status"] == "failed" and second["id"] != first["id"]
    assert gateway.cancelled == [first["gateway_payment_id"], second["gateway_payment_id"]]
    assert subscription(client, sub["id"])["pending_change"] is None


def test_C4_immediate_upgrades_can_be_switched_off(clean_db, tmp_path):
    (tmp_path / "2026-11-01.toml").write_text(
        'version = "2026-11-01"\neffective_from = 2026-01-01T00:00:00Z\n'
        "[trial]\ndays = 30\nnotice_days_before_end = 7\n"
        "[billing]\nretry_schedule_days = [1, 3, 7]\n[plan_changes]\nallow_immediate_upgrade = false\n[tax_rates]\n"
    )
    client = client_with(make_settings(clean_db, policy_dir=tmp_path))
    try:
        make_plan(client, "pro-monthly", amount=2000)
        make_plan(client, "enterprise-monthly", amount=9000, tier="enterprise")
        alice = make_customer(client, "alice")
        sub = buy(client, alice)
        refused(change(client, sub, "enterprise-monthly", when="now"), "not_an_upgrade")
        assert change(client, sub, "enterprise-monthly").status_code == 200  # C3 still offered
    finally:
        client.__exit__(None, None, None)


def test_C4_ops_may_upgrade_a_customer(client, alice):
    sub = buy(client, alice)
    response = client.post(
        f"/v1/subscriptions/{sub['id']}/change",
        json={"plan": "enterprise-monthly", "when": "now"},
        headers=ops_headers(),
    )
    assert response.status_code == 200 and response.json()["plan"] == "enterprise-monthly", response.text


class Outage(CancelRecorder):
    """The sandbox gateway, once unreachable after taking the charge (the answer lost)."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.lose_next = False

    async def charge(self, request):
        result = await self.inner.charge(request)
        if self.lose_next:
            from app.gateways.base import GatewayUnavailable

            self.lose_next = False
            raise GatewayUnavailable("the answer was lost")
        return result


def test_C4_an_upgrade_whose_answer_was_lost_is_charged_again_with_its_key_never_twice(client, alice):
    sub = buy(client, alice)
    outage = client.app.state.ctx.gateway = Outage(client.app.state.ctx.gateway)
    outage.lose_next = True
    response = change(client, sub, "enterprise-monthly", when="now")
    assert response.status_code == 503, response.text
    assert subscription(client, sub["id"])["plan"] == "pro-monthly"  # nothing changed yet
    response = change(client, sub, "enterprise-monthly", when="now")
    assert response.status_code == 200, response.text
    assert response.json()["plan"] == "enterprise-monthly"
    upgrades = [p for p in payments_of(client, alice) if p["purpose"] == "upgrade"]
    assert [(p["status"], p["amount"]) for p in upgrades] == [("succeeded", 9000)]
