"""Ops' discretionary actions through HTTP: refunds and credits (R2), suspension and termination (R3), the audit
log."""

from __future__ import annotations

from sqlalchemy import text

from tests.api.test_trials import start_trial
from tests.conftest import customer_headers, make_customer, make_plan, move_clock, ops_headers, run_due


def buy(client, customer: dict, method: str = "pm_card_visa", plan: str = "pro-monthly") -> dict:
    response = client.post(
        "/v1/subscriptions",
        json={"customer_id": customer["id"], "plan": plan, "payment_method": method},
        headers=customer_headers(customer["external_id"]),
    )
    assert response.status_code == 201, response.text
    return response.json()


def payments_of(client, customer: dict) -> list[dict]:
    return client.get(f"/v1/customers/{customer['id']}/payments", headers=ops_headers()).json()["data"]


def refund(client, payment_id: str, amount, reason="goodwill", headers=None):
    return client.post(
        f"/v1/payments/{payment_id}/refunds",
        json={"amount": amount, "reason": reason},
        headers=headers or ops_headers(),
    )


def test_R2_ops_refund_part_then_rest_never_more(client):
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice)
    [payment] = payments_of(client, alice)
    first = refund(client, payment["id"], 500, "service outage on 3 March")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["amount"] == 500 and body["currency"] == "usd" and body["reason"] == "service outage on 3 March"
    assert body["created_by"] == "staff-1" and body["status"] == "succeeded" and body["payment_id"] == payment["id"]
    over = refund(client, payment["id"], 1501)
    assert over.status_code == 422 and over.json()["code"] == "refund_exceeds_payment"
    assert refund(client, payment["id"], 1500).status_code == 201
    assert refund(client, payment["id"], 1).json()["code"] == "refund_exceeds_payment"
    assert client.get(f"/v1/payments/{payment['id']}", headers=ops_headers()).json()["refunded_amount"] == 2000
    # A refund never changes the subscription by itself.
    after = client.get(f"/v1/subscriptions/{sub['id']}", headers=ops_headers()).json()
    assert after["status"] == "active" and after["current_period_end"] == sub["current_period_end"]


def test_R2_refund_needs_ops_a_reason_and_a_sane_amount(client):
    make_plan(client)
    alice = make_customer(client, "alice")
    buy(client, alice)
    [payment] = payments_of(client, alice)
    denied = refund(client, payment["id"], 100, headers=customer_headers("alice"))
    assert denied.status_code == 403 and denied.json()["code"] == "forbidden"
    for amount, reason in ((100, ""), (100, "   "), (0, "x"), (-5, "x"), (1.5, "x"), ("10", "x")):
        response = refund(client, payment["id"], amount, reason)
        assert response.status_code == 422 and response.json()["code"] == "validation_error", (amount, reason)
    assert client.get(f"/v1/payments/{payment['id']}", headers=ops_headers()).json()["refunded_amount"] == 0
    assert refund(client, "pay_missing", 1).status_code == 404


def test_R2_refund_request_is_idempotent(client):
    make_plan(client)
    alice = make_customer(client, "alice")
    buy(client, alice)
    [payment] = payments_of(client, alice)
    headers = {**ops_headers(), "Idempotency-Key": "refund-123"}
    one = refund(client, payment["id"], 300, headers=headers)
    two = refund(client, payment["id"], 300, headers=headers)
    assert one.status_code == two.status_code == 201 and one.json() == two.json()
    assert client.get(f"/v1/payments/{payment['id']}", headers=ops_headers()).json()["refunded_amount"] == 300


def test_R2_credit_is_spent_before_the_card(client):
    make_plan(client, amount=5000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice)
    granted = client.post(
        f"/v1/customers/{alice['id']}/credits",
        json={"amount": 1500, "currency": "usd", "reason": "apology for the outage"},
        headers=ops_headers(),
    )
    assert granted.status_code == 201, granted.text
    assert (
        client.post(
            f"/v1/customers/{alice['id']}/credits",
            json={"amount": 1500, "currency": "usd", "reason": "x"},
            headers=customer_headers("alice"),
        ).status_code
        == 403
    )
    move_clock(client, sub["current_period_end"])
    run_due(client)
    renewal = payments_of(client, alice)[0]
    assert renewal["purpose"] == "renewal" and renewal["status"] == "succeeded"
    assert renewal["price_amount"] == 5000 and renewal["credit_applied"] == 1500 and renewal["amount"] == 3500
    credits = client.get(f"/v1/customers/{alice['id']}/credits", headers=customer_headers("alice")).json()
    assert credits["balances"] == {} and [c["kind"] for c in credits["data"]] == ["spend", "grant"]
    # R2: nothing grants another credit or refund by itself: the next renewal charges the card in full.
    move_clock(client, client.get(f"/v1/subscriptions/{sub['id']}", headers=ops_headers()).json()["current_period_end"])
    run_due(client)
    assert payments_of(client, alice)[0]["amount"] == 5000


def credit(client, customer: dict, amount: int, currency: str, reason: str = "goodwill"):
    return client.post(
        f"/v1/customers/{customer['id']}/credits",
        json={"amount": amount, "currency": currency, "reason": reason},
        headers=ops_headers(),
    )


def test_R2_credit_in_another_currency_than_the_billing_one_is_refused(client):
    """R2: "a credit is in the customer's billing currency": a `eur` credit for a `usd` subscriber would never be
    spent, so it is refused (422 `currency_mismatch`), nothing is written; the `usd` one is accepted."""
    make_plan(client, amount=5000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice)
    refused = credit(client, alice, 1500, "eur")
    assert refused.status_code == 422 and refused.json()["code"] == "currency_mismatch"
    assert refused.headers["content-type"] == "application/problem+json"
    assert "usd" in refused.json()["detail"]
    credits = client.get(f"/v1/customers/{alice['id']}/credits", headers=ops_headers()).json()
    assert credits["data"] == [] and credits["balances"] == {}
    assert not client.get(
        f"/v1/audit-events?customer_id={alice['id']}&action=credit.granted", headers=ops_headers()
    ).json()["data"]
    assert credit(client, alice, 1500, "usd").status_code == 201
    # An ended subscription still says which currency the customer is billed in.
    assert client.post(f"/v1/subscriptions/{sub['id']}/cancel", headers=customer_headers("alice")).status_code == 200
    move_clock(client, sub["current_period_end"])
    run_due(client)
    assert client.get(f"/v1/subscriptions/{sub['id']}", headers=ops_headers()).json()["status"] == "canceled"
    assert credit(client, alice, 100, "eur").json()["code"] == "currency_mismatch"


def test_R2_first_credit_of_a_customer_never_billed_sets_the_currency(client):
    """R2: a customer who has never had a subscription has no billing currency yet: the first credit may be in any
    currency and makes it theirs, so a later credit in another one is refused (`currency_mismatch`)."""
    make_plan(client)
    bob = make_customer(client, "bob")
    start_trial(client, bob)  # a trial bills nothing: no currency yet
    assert credit(client, bob, 300, "eur", "trial trouble").status_code == 201
    refused = credit(client, bob, 300, "usd")
    assert refused.status_code == 422 and refused.json()["code"] == "currency_mismatch"
    assert credit(client, bob, 200, "eur").status_code == 201
    balances = client.get(f"/v1/customers/{bob['id']}/credits", headers=ops_headers()).json()["balances"]
    assert balances == {"eur": 500}


def test_R3_suspension_stops_access_period_keeps_running(client):
    make_plan(client)
    alice = make_customer(client, "alice")
    sub = buy(client, alice)
    path = f"/v1/customers/{alice['id']}"
    assert client.post(f"{path}/suspend", json={}, headers=ops_headers()).status_code == 422  # reason required
    assert client.post(f"{path}/suspend", json={"reason": "x"}, headers=customer_headers("alice")).status_code == 403
    suspended = client.post(f"{path}/suspend", json={"reason": "chargeback investigation"}, headers=ops_headers())
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    access = client.get(f"{path}/access", headers=customer_headers("alice")).json()
    assert access["has_access"] is False and access["reason"] == "suspended"
    move_clock(client, sub["current_period_end"])
    assert run_due(client)["subscription_renewals"] == 0  # the period keeps running; the renewal is held (R3)
    lifted = client.post(f"{path}/unsuspend", json={"reason": "resolved"}, headers=ops_headers())
    assert lifted.json()["status"] == "active"
    assert run_due(client)["subscription_renewals"] == 1  # charged at the first run after the lifting
    assert client.get(f"{path}/access", headers=customer_headers("alice")).json()["has_access"] is True
    assert all(p["refunded_amount"] == 0 for p in payments_of(client, alice))


def test_R3_termination_ends_everything_refunds_nothing(client):
    make_plan(client)
    alice = make_customer(client, "alice")
    bob = make_customer(client, "bob")
    sub = buy(client, alice)
    trial = start_trial(client, bob).json()
    client.post(
        f"/v1/customers/{alice['id']}/credits",
        json={"amount": 700, "currency": "usd", "reason": "x"},
        headers=ops_headers(),
    )
    for who in (alice, bob):
        response = client.post(
            f"/v1/customers/{who['id']}/terminate", json={"reason": "terms violation"}, headers=ops_headers()
        )
        assert response.status_code == 200 and response.json()["status"] == "terminated"
    ended = client.get(f"/v1/subscriptions/{sub['id']}", headers=ops_headers()).json()
    assert ended["status"] == "canceled" and ended["ended_reason"] == "terminated"
    assert client.get(f"/v1/trials/{trial['id']}", headers=ops_headers()).json()["status"] == "terminated"
    assert client.get(f"/v1/customers/{alice['id']}/credits", headers=ops_headers()).json()["balances"] == {}
    assert all(p["refunded_amount"] == 0 for p in payments_of(client, alice))
    again = client.post(
        "/v1/subscriptions",
        json={"customer_id": alice["id"], "plan": "pro-monthly", "payment_method": "pm_card_visa"},
        headers=customer_headers("alice"),
    )
    assert again.status_code == 409
    assert (
        client.post(f"/v1/customers/{alice['id']}/unsuspend", json={"reason": "x"}, headers=ops_headers()).status_code
        == 409
    )
    move_clock(client, "2031-06-01T00:00:00Z")
    run_due(client)
    assert len(payments_of(client, alice)) == 1  # nothing charged after the end


def test_R2_audit_log_records_who_when_how_much_why(client, database_url, is_postgres):
    make_plan(client)
    alice = make_customer(client, "alice")
    buy(client, alice)
    [payment] = payments_of(client, alice)
    refund(client, payment["id"], 250, "late delivery")
    events = client.get(
        f"/v1/audit-events?customer_id={alice['id']}&action=refund.requested", headers=ops_headers()
    ).json()["data"]
    [event] = events
    assert event["actor"] == "staff-1" and event["actor_role"] == "ops" and event["reason"] == "late delivery"
    assert event["data"]["amount"] == 250 and event["policy_version"] == "2026-11-01"
    assert client.get("/v1/audit-events", headers=customer_headers("alice")).status_code == 403
    if is_postgres:
        import asyncio

        import pytest

        from app.db import Database

        async def tamper() -> None:
            db = Database(database_url, pool_size=1)  # its own engine: the app's lives on another event loop
            try:
                async with db.transaction() as conn:
                    await conn.execute(text("UPDATE audit_events SET reason = 'edited'"))
            finally:
                await db.dispose()

        with pytest.raises(Exception, match="append-only"):
            asyncio.run(tamper())
