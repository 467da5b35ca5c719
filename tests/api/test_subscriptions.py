"""Paid subscriptions through HTTP, the sandbox gateway and the sandbox clock: the purchase (B1), one live
subscription per customer, trial interplay (T5, T6), renewals at the locked price on the acquisition anchor
(B2-B4), end-of-period cancellation and its undo (C1, C2), no refunds (R1), tax (P2) and the payments API.

The clock starts at START = 2030-01-15T12:00:00Z in every test."""

from __future__ import annotations

import datetime as _dt
import itertools
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.test_trials import iso, notices, parse, start_trial
from tests.conftest import (
    START,
    customer_headers,
    make_customer,
    make_plan,
    make_settings,
    move_clock,
    ops_headers,
    run_due,
)
from tests.support.webhooks import intent_event, post_event

SECOND = _dt.timedelta(seconds=1)
DAY = _dt.timedelta(days=1)
DECLINED = ["pm_card_chargeDeclined", "pm_card_visa_chargeDeclined"]


# ---------------------------------------------------------------------------------------------------- helpers


def purchase(
    client, customer: dict, plan: str = "pro-monthly", payment_method: str = "pm_card_visa", sub: str | None = None
):
    return client.post(
        "/v1/subscriptions",
        json={"customer_id": customer["id"], "plan": plan, "payment_method": payment_method},
        headers=customer_headers(sub or customer["external_id"]),
    )


def buy(client, customer: dict, plan: str = "pro-monthly", payment_method: str = "pm_card_visa") -> dict:
    response = purchase(client, customer, plan, payment_method)
    assert response.status_code == 201, response.text
    return response.json()


def subscription(client, sub_id: str) -> dict:
    response = client.get(f"/v1/subscriptions/{sub_id}", headers=ops_headers())
    assert response.status_code == 200, response.text
    return response.json()


def subscriptions_of(client, customer: dict) -> list[dict]:
    response = client.get(f"/v1/customers/{customer['id']}/subscriptions?limit=100", headers=ops_headers())
    assert response.status_code == 200, response.text
    return response.json()["data"]


def payments_of(client, customer: dict) -> list[dict]:
    """The customer's payments, newest first (the API's order)."""
    response = client.get(f"/v1/customers/{customer['id']}/payments?limit=100", headers=ops_headers())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["has_more"] is False
    return body["data"]


def access_of(client, customer: dict) -> dict:
    response = client.get(f"/v1/customers/{customer['id']}/access", headers=customer_headers(customer["external_id"]))
    assert response.status_code == 200, response.text
    return response.json()


def notice_types(client, customer: dict) -> list[str]:
    return sorted(n["type"] for n in notices(client, customer))


def cancel(client, sub: dict, who: str | None = None):
    return client.post(f"/v1/subscriptions/{sub['id']}/cancel", headers=customer_headers(who or _owner(client, sub)))


def resume(client, sub: dict, who: str | None = None):
    return client.post(f"/v1/subscriptions/{sub['id']}/resume", headers=customer_headers(who or _owner(client, sub)))


def _owner(client, sub: dict) -> str:
    response = client.get(f"/v1/customers/{sub['customer_id']}", headers=ops_headers())
    assert response.status_code == 200, response.text
    return response.json()["external_id"]


def at(value: str, delta: _dt.timedelta = _dt.timedelta(0)) -> str:
    return iso(parse(value) + delta)


def policy_dir(tmp_path: Path, *, retry_schedule_days: str = "[1, 3, 7]", tax_rates: str = "") -> Path:
    """One policy document (as policies/versions/, with the given billing settings), in force since 2026."""
    (tmp_path / "2026-11-01.toml").write_text(
        'version = "2026-11-01"\neffective_from = 2026-01-01T00:00:00Z\n'
        "[trial]\ndays = 30\nnotice_days_before_end = 7\n"
        f"[billing]\nretry_schedule_days = {retry_schedule_days}\n[tax_rates]\n{tax_rates}\n"
    )
    return tmp_path


def client_with(settings) -> TestClient:
    from app.main import create_app

    client = TestClient(create_app(settings), raise_server_exceptions=False)
    client.__enter__()
    move_clock(client, START)
    return client


# ---------------------------------------------------------------------------------------------------- B1


def test_B1_card_purchase_is_active_from_the_payment_time(client):
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    assert access_of(client, alice)["has_access"] is False
    response = purchase(client, alice)
    assert response.status_code == 201, response.text
    sub = response.json()
    assert sub["status"] == "active" and sub["plan"] == "pro-monthly" and sub["customer_id"] == alice["id"]
    assert sub["current_period_start"] == START and sub["current_period_end"] == "2030-02-15T12:00:00Z"
    assert sub["price"] == {"amount": 2000, "currency": "usd"} and sub["tax"] == {"amount": 0, "currency": "usd"}
    assert sub["cancel_at_period_end"] is False and sub["client_secret"] is None
    assert sub["canceled_at"] is None and sub["ended_at"] is None and sub["ended_reason"] is None
    assert client.get(f"/v1/subscriptions/{sub['id']}", headers=customer_headers("alice")).json() == sub
    [payment] = payments_of(client, alice)
    assert payment["status"] == "succeeded" and payment["purpose"] == "purchase"
    assert payment["subscription_id"] == sub["id"] and payment["amount"] == 2000 and payment["tax_amount"] == 0
    assert payment["currency"] == "usd" and payment["refunded_amount"] == 0 and payment["gateway"] == "sandbox"
    assert payment["gateway_payment_id"] and payment["created_at"] == START
    assert all(type(v) is int for v in (payment["amount"], payment["tax_amount"], sub["price"]["amount"]))  # B4
    assert (payment["period_start"], payment["period_end"]) == (START, "2030-02-15T12:00:00Z")
    assert access_of(client, alice) == {
        "object": "access",
        "has_access": True,
        "source": "subscription",
        "plan": "pro-monthly",
        "until": "2030-02-15T12:00:00Z",
        "reason": "subscription_active",
    }
    assert notice_types(client, alice) == ["receipt"]


@pytest.mark.parametrize("method", DECLINED)
def test_B1_declined_purchase_is_402_and_grants_nothing(client, method):
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    response = purchase(client, alice, payment_method=method)
    assert response.status_code == 402, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 402 and problem["code"] == "card_declined"
    assert problem["decline_code"] == "card_declined" and "card_declined" in problem["detail"]
    # Nothing live, nothing granted, no receipt.
    assert all(s["status"] == "canceled" and s["current_period_start"] is None for s in subscriptions_of(client, alice))
    assert access_of(client, alice)["has_access"] is False
    assert notice_types(client, alice) == []
    # The failed payment is recorded.
    [payment] = payments_of(client, alice)
    assert payment["id"] == problem["payment_id"]
    assert payment["status"] == "failed" and payment["failure_code"] == "card_declined"
    assert payment["amount"] == 2000 and payment["period_start"] is None
    # The slot is free: a working card buys the plan.
    assert buy(client, alice)["status"] == "active"


def test_B1_purchase_needing_action_is_incomplete_until_a_signed_success(client, settings):
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    response = purchase(client, alice, payment_method="pm_card_authenticationRequired")
    assert response.status_code == 201, response.text
    sub = response.json()
    assert sub["status"] == "incomplete" and sub["client_secret"]
    assert sub["current_period_start"] is None and sub["current_period_end"] is None
    assert access_of(client, alice)["has_access"] is False
    [payment] = payments_of(client, alice)
    assert payment["status"] == "pending" and payment["gateway_payment_id"]
    assert sub["client_secret"].startswith(payment["gateway_payment_id"])
    assert subscription(client, sub["id"])["client_secret"] == sub["client_secret"]
    assert notice_types(client, alice) == []
    # Nothing completes it by itself.
    move_clock(client, at(START, _dt.timedelta(minutes=10)))
    run_due(client)
    assert subscription(client, sub["id"])["status"] == "incomplete"
    # The customer completes 3-D Secure; Stripe reports it with a signed event naming the PaymentIntent.
    reply = post_event(
        client,
        intent_event("payment_intent.succeeded", payment["gateway_payment_id"], amount=2000),
        settings.stripe_webhook_secret,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["duplicate"] is False
    active = subscription(client, sub["id"])
    assert active["status"] == "active" and active["client_secret"] is None
    assert active["current_period_start"] == "2030-01-15T12:10:00Z"  # B1: the payment's time, not the request's
    assert active["current_period_end"] == "2030-02-15T12:10:00Z"
    [paid] = payments_of(client, alice)
    assert paid["status"] == "succeeded" and paid["period_start"] == "2030-01-15T12:10:00Z"
    assert access_of(client, alice)["has_access"] is True
    assert notice_types(client, alice) == ["receipt"]


def test_B1_purchase_needing_action_that_then_fails_grants_nothing(client, settings):
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice, payment_method="pm_card_authenticationRequired")
    [payment] = payments_of(client, alice)
    reply = post_event(
        client,
        intent_event(
            "payment_intent.payment_failed",
            payment["gateway_payment_id"],
            amount=2000,
            decline_code="authentication_failed",
        ),
        settings.stripe_webhook_secret,
    )
    assert reply.status_code == 200, reply.text
    ended = subscription(client, sub["id"])
    assert ended["status"] == "canceled" and ended["ended_reason"] == "payment_failed"
    assert ended["current_period_start"] is None and ended["client_secret"] is None
    [failed] = payments_of(client, alice)
    assert failed["status"] == "failed" and failed["failure_code"] == "authentication_failed"
    assert access_of(client, alice)["has_access"] is False
    assert notice_types(client, alice) == []
    assert buy(client, alice)["status"] == "active"  # the slot is free


def test_B1_unpaid_incomplete_purchase_expires_after_a_day_and_frees_the_slot(client):
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice, payment_method="pm_card_authenticationRequired")
    move_clock(client, at(START, 12 * _dt.timedelta(hours=1)))
    assert run_due(client)["incomplete_purchase_expiry"] == 0
    assert subscription(client, sub["id"])["status"] == "incomplete"
    assert purchase(client, alice).json()["code"] == "subscription_exists"
    move_clock(client, at(START, DAY))
    assert run_due(client)["incomplete_purchase_expiry"] == 1
    assert run_due(client)["incomplete_purchase_expiry"] == 0
    expired = subscription(client, sub["id"])
    assert expired["status"] == "canceled" and expired["ended_reason"] == "payment_failed"
    assert expired["current_period_start"] is None
    [payment] = payments_of(client, alice)
    assert payment["status"] == "failed"
    assert access_of(client, alice)["has_access"] is False
    fresh = buy(client, alice)
    assert fresh["status"] == "active" and fresh["current_period_start"] == at(START, DAY)


# ---------------------------------------------------------------------------------------------------- one live


@pytest.mark.parametrize("first_method", ["pm_card_visa", "pm_card_authenticationRequired"])
def test_one_live_subscription_per_customer(client, first_method):
    make_plan(client, amount=2000)
    make_plan(client, code="pro-yearly", amount=20000, interval="year")
    alice = make_customer(client, "alice")
    first = buy(client, alice, payment_method=first_method)
    for plan, method in (("pro-monthly", first_method), ("pro-monthly", "pm_card_visa"), ("pro-yearly", first_method)):
        second = purchase(client, alice, plan=plan, payment_method=method)
        assert second.status_code == 409, second.text
        assert second.json()["code"] == "subscription_exists"
        assert second.headers["content-type"].startswith("application/problem+json")
    assert [s["id"] for s in subscriptions_of(client, alice)] == [first["id"]]
    assert len(payments_of(client, alice)) == 1  # the refused purchase charged nothing


def test_B3_new_purchase_after_the_first_ended_pays_the_new_list_price(client):
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    first = buy(client, alice)
    assert cancel(client, first).status_code == 200
    raised = client.patch("/v1/plans/pro-monthly", json={"amount": 2500}, headers=ops_headers())
    assert raised.status_code == 200 and raised.json()["price"]["amount"] == 2500
    assert purchase(client, alice).json()["code"] == "subscription_exists"  # still live until its period end
    move_clock(client, first["current_period_end"])
    run_due(client)
    assert subscription(client, first["id"])["status"] == "canceled"
    second = buy(client, alice)
    assert second["id"] != first["id"] and second["price"]["amount"] == 2500
    assert second["current_period_start"] == first["current_period_end"]  # bought at that moment
    newest, oldest = payments_of(client, alice)
    assert (newest["subscription_id"], newest["amount"]) == (second["id"], 2500)
    assert (oldest["subscription_id"], oldest["amount"]) == (first["id"], 2000)
    assert subscription(client, first["id"])["price"]["amount"] == 2000


# ---------------------------------------------------------------------------------------------------- T5, T6


def test_T6_buying_during_a_trial_forfeits_it_without_adding_its_days(client):
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    trial = start_trial(client, alice).json()
    assert trial["status"] == "active"
    bought_at = "2030-01-20T08:00:00Z"
    move_clock(client, bought_at)
    sub = buy(client, alice)
    assert sub["current_period_start"] == bought_at
    assert sub["current_period_end"] == "2030-02-20T08:00:00Z"  # one month, no unused trial days added
    forfeited = client.get(f"/v1/trials/{trial['id']}", headers=customer_headers("alice")).json()
    assert forfeited["status"] == "forfeited" and forfeited["ended_at"] == bought_at
    assert access_of(client, alice)["source"] == "subscription"
    # The trial's own end passes: it stays forfeited and no trial notice goes out.
    move_clock(client, at(trial["ends_at"], DAY))
    jobs = run_due(client)
    assert jobs["trial_expiry"] == 0 and jobs["trial_expiring_notices"] == 0
    assert client.get(f"/v1/trials/{trial['id']}", headers=ops_headers()).json()["status"] == "forfeited"
    assert "trial_expired" not in notice_types(client, alice) and "trial_expiring" not in notice_types(client, alice)


def test_T6_a_declined_purchase_during_a_trial_leaves_the_trial_running(client):
    make_plan(client)
    alice = make_customer(client, "alice")
    trial = start_trial(client, alice).json()
    assert purchase(client, alice, payment_method="pm_card_chargeDeclined").status_code == 402
    kept = client.get(f"/v1/trials/{trial['id']}", headers=ops_headers()).json()
    assert kept["status"] == "active" and kept["ended_at"] is None
    assert access_of(client, alice)["source"] == "trial"


def test_T5_a_paid_purchase_bars_later_trials_for_the_person(client):
    make_plan(client)
    alice = make_customer(client, "alice", email="Alice@Example.com")
    buy(client, alice)
    refused = start_trial(client, alice)
    assert refused.status_code == 409 and refused.json()["code"] == "trial_not_eligible"
    twin = make_customer(client, "alice-2", email=" alice@example.COM ")
    refused = start_trial(client, twin)
    assert refused.status_code == 409 and refused.json()["code"] == "trial_not_eligible"
    bob = make_customer(client, "bob", email="bob@example.com")
    assert start_trial(client, bob).status_code == 201


@pytest.mark.parametrize("method", DECLINED)
def test_T5_a_declined_purchase_does_not_make_the_person_ineligible(client, method):
    make_plan(client)
    alice = make_customer(client, "alice")
    assert purchase(client, alice, payment_method=method).status_code == 402
    twin = make_customer(client, "alice-2", email="alice@example.com")
    assert purchase(client, twin, payment_method=method).status_code == 402
    assert start_trial(client, twin).status_code == 201


# ---------------------------------------------------------------------------------------------------- B2, B3


def test_B2_B3_renewals_charge_the_locked_price_after_a_list_price_rise(client):
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice)
    assert client.patch("/v1/plans/pro-monthly", json={"amount": 3000}, headers=ops_headers()).status_code == 200
    # Just before the period end nothing is due.
    move_clock(client, at(sub["current_period_end"], -SECOND))
    assert run_due(client)["subscription_renewals"] == 0
    ends = ["2030-02-15T12:00:00Z", "2030-03-15T12:00:00Z", "2030-04-15T12:00:00Z"]
    for start, end in itertools.pairwise(ends):
        move_clock(client, start)
        assert run_due(client)["subscription_renewals"] == 1
        assert run_due(client)["subscription_renewals"] == 0  # running twice charges nothing more
        renewed = subscription(client, sub["id"])
        assert renewed["status"] == "active" and renewed["price"]["amount"] == 2000
        assert (renewed["current_period_start"], renewed["current_period_end"]) == (start, end)
    listed = payments_of(client, alice)
    assert [p["purpose"] for p in listed] == ["renewal", "renewal", "purchase"]
    assert [(p["period_start"], p["period_end"]) for p in reversed(listed)] == [
        (START, ends[0]),
        (ends[0], ends[1]),
        (ends[1], ends[2]),
    ]
    assert all(p["status"] == "succeeded" and p["amount"] == 2000 and p["subscription_id"] == sub["id"] for p in listed)
    assert [p["created_at"] for p in reversed(listed)] == [START, ends[0], ends[1]]
    # One receipt per successful charge, with the amount, the tax and the period.
    receipts = [n for n in notices(client, alice) if n["type"] == "receipt"]
    assert len(receipts) == 3 and len(notices(client, alice)) == 3
    bodies = sorted(n["body"] for n in receipts)
    for period in (
        "15 January 2030 to 15 February 2030",
        "15 February 2030 to 15 March 2030",
        "15 March 2030 to 15 April 2030",
    ):
        [body] = [b for b in bodies if period in b]
        assert "Price: 20.00 USD" in body and "Tax: 0.00 USD" in body and "Charged: 20.00 USD" in body
    # A new subscriber pays the list price of the day.
    bob = make_customer(client, "bob")
    assert buy(client, bob)["price"]["amount"] == 3000 and payments_of(client, bob)[0]["amount"] == 3000


def test_B2_a_clock_three_periods_ahead_renews_three_times_in_order(client):
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice)
    move_clock(client, "2030-04-15T12:00:00Z")
    assert run_due(client)["subscription_renewals"] == 3
    jobs = run_due(client)
    assert jobs["subscription_renewals"] == 0 and jobs["subscription_retries"] == 0
    renewed = subscription(client, sub["id"])
    assert (renewed["current_period_start"], renewed["current_period_end"]) == (
        "2030-04-15T12:00:00Z",
        "2030-05-15T12:00:00Z",
    )
    renewals = [p for p in reversed(payments_of(client, alice)) if p["purpose"] == "renewal"]
    assert [(p["period_start"], p["period_end"]) for p in renewals] == [
        ("2030-02-15T12:00:00Z", "2030-03-15T12:00:00Z"),
        ("2030-03-15T12:00:00Z", "2030-04-15T12:00:00Z"),
        ("2030-04-15T12:00:00Z", "2030-05-15T12:00:00Z"),
    ]
    assert all(p["status"] == "succeeded" and p["amount"] == 2000 for p in renewals)
    assert len(payments_of(client, alice)) == 4
    assert notice_types(client, alice) == ["receipt"] * 4


# ---------------------------------------------------------------------------------------------------- B4


@pytest.mark.parametrize(
    ("bought", "interval", "ends"),
    [
        ("2031-01-31T12:00:00Z", "month", ["2031-02-28", "2031-03-31", "2031-04-30", "2031-05-31"]),
        ("2032-01-31T12:00:00Z", "month", ["2032-02-29", "2032-03-31"]),
        ("2032-02-29T12:00:00Z", "year", ["2033-02-28", "2034-02-28", "2035-02-28", "2036-02-29"]),
    ],
    ids=["monthly_31st", "monthly_31st_leap", "yearly_29_feb"],
)
def test_B4_periods_stay_anchored_on_the_acquisition_date(client, bought, interval, ends):
    make_plan(client, code="pro", amount=2000, interval=interval)
    alice = make_customer(client, "alice")
    move_clock(client, bought)
    sub = buy(client, alice, plan="pro")
    ends = [f"{day}T12:00:00Z" for day in ends]
    assert sub["current_period_start"] == bought and sub["current_period_end"] == ends[0]
    starts = [bought, *ends]
    for index, end in enumerate(ends[:-1]):
        move_clock(client, end)
        assert run_due(client)["subscription_renewals"] == 1
        renewed = subscription(client, sub["id"])
        assert (renewed["current_period_start"], renewed["current_period_end"]) == (end, ends[index + 1])
    periods = [(p["period_start"], p["period_end"]) for p in reversed(payments_of(client, alice))]
    assert periods == list(zip(starts, ends, strict=False))  # starts also holds the last end


# ---------------------------------------------------------------------------------------------------- C1, C2, R1


def test_C1_R1_cancel_takes_effect_at_the_period_end_and_refunds_nothing(client):
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice)
    move_clock(client, "2030-02-15T12:00:00Z")
    assert run_due(client)["subscription_renewals"] == 1  # a second paid period
    move_clock(client, "2030-02-20T09:30:00Z")
    response = cancel(client, sub)
    assert response.status_code == 200, response.text
    canceled = response.json()
    assert canceled["status"] == "active" and canceled["cancel_at_period_end"] is True
    assert canceled["canceled_at"] == "2030-02-20T09:30:00Z" and canceled["ended_at"] is None
    assert canceled["current_period_end"] == "2030-03-15T12:00:00Z"
    [scheduled] = [n for n in notices(client, alice) if n["type"] == "cancellation_scheduled"]
    assert scheduled["subject"] == "Your Pro-Monthly subscription will end on 15 March 2030, 12:00 UTC"
    assert "15 March 2030" in scheduled["body"] and "nothing is refunded" in scheduled["body"]
    # Cancelling again changes nothing.
    again = cancel(client, sub)
    assert again.status_code == 200 and again.json() == canceled
    assert notice_types(client, alice).count("cancellation_scheduled") == 1
    # Access until the period end.
    move_clock(client, at(canceled["current_period_end"], -SECOND))
    assert run_due(client)["subscription_period_ends"] == 0
    assert access_of(client, alice)["has_access"] is True
    assert access_of(client, alice)["until"] == canceled["current_period_end"]
    move_clock(client, canceled["current_period_end"])
    assert access_of(client, alice)["has_access"] is False  # ended at the period end, whenever the job runs
    move_clock(client, at(canceled["current_period_end"], _dt.timedelta(hours=3)))
    jobs = run_due(client)
    assert jobs["subscription_period_ends"] == 1 and jobs["subscription_renewals"] == 0
    ended = subscription(client, sub["id"])
    assert ended["status"] == "canceled" and ended["ended_reason"] == "canceled"
    assert ended["ended_at"] == canceled["current_period_end"]
    assert access_of(client, alice)["has_access"] is False
    assert notice_types(client, alice).count("subscription_ended") == 1
    # R1: nothing refunded, no proration: exactly the two paid periods, in full.
    listed = payments_of(client, alice)
    assert [p["purpose"] for p in listed] == ["renewal", "purchase"]
    assert all(p["refunded_amount"] == 0 and p["status"] == "succeeded" for p in listed)
    assert sum(p["amount"] for p in listed) == 2 * 2000
    # After the end: cancel and resume are refused.
    for action in (cancel, resume):
        refused = action(client, sub)
        assert refused.status_code == 409 and refused.json()["code"] == "subscription_ended"
    # Nothing is ever charged again.
    move_clock(client, "2031-06-01T00:00:00Z")
    run_due(client)
    assert payments_of(client, alice) == listed
    assert subscription(client, sub["id"]) == ended


def test_C2_resume_before_the_end_renews_as_if_nothing_happened(client):
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice)
    move_clock(client, "2030-02-01T00:00:00Z")
    assert cancel(client, sub).json()["cancel_at_period_end"] is True
    move_clock(client, "2030-02-14T00:00:00Z")
    response = resume(client, sub)
    assert response.status_code == 200, response.text
    resumed = response.json()
    assert resumed["status"] == "active" and resumed["cancel_at_period_end"] is False
    assert resumed["canceled_at"] is None and resumed["current_period_end"] == sub["current_period_end"]
    assert resume(client, sub).json() == resumed  # resuming again changes nothing
    move_clock(client, sub["current_period_end"])
    jobs = run_due(client)
    assert jobs["subscription_renewals"] == 1 and jobs["subscription_period_ends"] == 0
    renewed = subscription(client, sub["id"])
    assert renewed["status"] == "active" and renewed["ended_at"] is None
    assert (renewed["current_period_start"], renewed["current_period_end"]) == (
        "2030-02-15T12:00:00Z",
        "2030-03-15T12:00:00Z",
    )
    assert [p["amount"] for p in payments_of(client, alice)] == [2000, 2000]
    assert "subscription_ended" not in notice_types(client, alice)
    assert access_of(client, alice)["has_access"] is True


def test_C2_resume_after_the_period_end_is_refused_even_before_the_jobs_ran(client):
    """The undo is allowed only until the period end, whether or not the period-end job has run yet."""
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice)
    assert cancel(client, sub).status_code == 200
    move_clock(client, at(sub["current_period_end"], _dt.timedelta(minutes=1)))
    assert access_of(client, alice)["has_access"] is False  # the cancellation has taken effect
    refused = resume(client, sub)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "subscription_ended"
    run_due(client)
    assert subscription(client, sub["id"])["status"] == "canceled"
    assert len(payments_of(client, alice)) == 1


def test_C1_cancel_and_resume_belong_to_the_owner(client):
    make_plan(client)
    alice = make_customer(client, "alice")
    make_customer(client, "mallory")
    sub = buy(client, alice)
    for action in (cancel, resume):
        assert action(client, sub, who="mallory").status_code == 404
    assert client.get(f"/v1/subscriptions/{sub['id']}", headers=customer_headers("mallory")).status_code == 404
    assert subscription(client, sub["id"])["cancel_at_period_end"] is False


# ---------------------------------------------------------------------------------------------------- P2


def test_P2_tax_by_billing_country_is_recorded_and_shown_separately(clean_db, tmp_path):
    tax_client = client_with(make_settings(clean_db, policy_dir=policy_dir(tmp_path, tax_rates='DE = "0.19"')))
    try:
        make_plan(tax_client, amount=999)
        hans = make_customer(tax_client, "hans", country="DE")
        sub = buy(tax_client, hans)
        assert sub["price"] == {"amount": 999, "currency": "usd"}
        assert sub["tax"] == {"amount": 190, "currency": "usd"}  # 189.81, ROUND_HALF_UP
        [payment] = payments_of(tax_client, hans)
        assert (payment["amount"], payment["price_amount"], payment["tax_amount"]) == (1189, 999, 190)
        [receipt] = notices(tax_client, hans)
        assert receipt["type"] == "receipt"
        assert "Price: 9.99 USD" in receipt["body"] and "Tax: 1.90 USD" in receipt["body"]
        assert "Charged: 11.89 USD" in receipt["body"]
        # The renewal carries the same tax.
        move_clock(tax_client, sub["current_period_end"])
        run_due(tax_client)
        renewal = payments_of(tax_client, hans)[0]
        assert renewal["purpose"] == "renewal"
        assert (renewal["amount"], renewal["price_amount"], renewal["tax_amount"]) == (1189, 999, 190)
        # A half minor unit rounds up (ROUND_HALF_UP, not to even): 150 * 0.19 = 28.5 -> 29.
        make_plan(tax_client, code="mini", amount=150)
        greta = make_customer(tax_client, "greta", country="DE")
        assert buy(tax_client, greta, plan="mini")["tax"]["amount"] == 29
        assert payments_of(tax_client, greta)[0]["amount"] == 179
        # No rate for the US: no tax.
        ann = make_customer(tax_client, "ann", country="US")
        assert buy(tax_client, ann)["tax"] == {"amount": 0, "currency": "usd"}
        [payment] = payments_of(tax_client, ann)
        assert (payment["amount"], payment["price_amount"], payment["tax_amount"]) == (999, 999, 0)
    finally:
        tax_client.__exit__(None, None, None)


# ---------------------------------------------------------------------------------------------------- payments API


def test_payments_are_visible_to_their_owner_only(client):
    make_plan(client)
    alice = make_customer(client, "alice")
    make_customer(client, "mallory")
    buy(client, alice)
    [payment] = payments_of(client, alice)
    mine = client.get(f"/v1/payments/{payment['id']}", headers=customer_headers("alice"))
    assert mine.status_code == 200 and mine.json() == payment
    assert client.get(f"/v1/payments/{payment['id']}", headers=ops_headers()).json() == payment
    theirs = client.get(f"/v1/payments/{payment['id']}", headers=customer_headers("mallory"))
    assert theirs.status_code == 404 and theirs.json()["code"] == "not_found"
    listed = client.get(f"/v1/customers/{alice['id']}/payments", headers=customer_headers("mallory"))
    assert listed.status_code == 404
    assert client.get("/v1/payments/pay_nope", headers=customer_headers("alice")).status_code == 404
    assert client.get(f"/v1/payments/{payment['id']}").status_code == 401


def test_payments_list_newest_first_with_pagination(client):
    make_plan(client)
    alice = make_customer(client, "alice")
    buy(client, alice)
    move_clock(client, "2030-04-15T12:00:00Z")
    run_due(client)
    everything = payments_of(client, alice)
    assert [p["period_start"] for p in everything] == [
        "2030-04-15T12:00:00Z",
        "2030-03-15T12:00:00Z",
        "2030-02-15T12:00:00Z",
        START,
    ]
    headers = customer_headers("alice")
    first = client.get(f"/v1/customers/{alice['id']}/payments?limit=3", headers=headers).json()
    assert [p["id"] for p in first["data"]] == [p["id"] for p in everything[:3]] and first["has_more"] is True
    rest = client.get(
        f"/v1/customers/{alice['id']}/payments?limit=3&starting_after={first['data'][-1]['id']}", headers=headers
    ).json()
    assert [p["id"] for p in rest["data"]] == [everything[3]["id"]] and rest["has_more"] is False
    assert client.get(f"/v1/customers/{alice['id']}/payments?limit=0", headers=headers).status_code == 422
