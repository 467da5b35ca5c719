"""Plan changes at the period end (C3) through HTTP: POST /v1/subscriptions/{id}/change and
DELETE /v1/subscriptions/{id}/pending-change, every refusal of the contract, the Idempotency-Key, ownership,
notices, audit entries and domain events; then the renewal at the period end on the new plan (B3, B4, B5) and the
interplay with cancellation (C1/C2) and trials (T6).

The clock starts at START = 2030-01-15T12:00:00Z in every test."""

from __future__ import annotations

import pytest

from tests.api.test_subscriptions import (
    access_of,
    buy,
    cancel,
    notice_types,
    payments_of,
    subscription,
)
from tests.conftest import (
    START,
    customer_headers,
    make_customer,
    make_plan,
    move_clock,
    ops_headers,
    run_due,
)

FIRST_END = "2030-02-15T12:00:00Z"


def change(client, sub: dict, plan: str, when: str | None = None, who: str = "alice", key: str | None = None):
    body = {"plan": plan} if when is None else {"plan": plan, "when": when}
    headers = customer_headers(who) if who != "ops" else ops_headers()
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(f"/v1/subscriptions/{sub['id']}/change", json=body, headers=headers)


def withdraw(client, sub: dict, who: str = "alice"):
    headers = customer_headers(who) if who != "ops" else ops_headers()
    return client.delete(f"/v1/subscriptions/{sub['id']}/pending-change", headers=headers)


def audit(client, customer: dict) -> list[dict]:
    response = client.get(
        "/v1/audit-events", params={"customer_id": customer["id"], "limit": 100}, headers=ops_headers()
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def events_of(client, customer: dict) -> list[dict]:
    response = client.get("/v1/events", params={"customer_id": customer["id"], "limit": 100}, headers=ops_headers())
    assert response.status_code == 200, response.text
    return response.json()["data"]


def refused(response, code: str) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


@pytest.fixture
def plans(client):
    make_plan(client, "pro-monthly", amount=2000)
    make_plan(client, "pro-yearly", amount=20000, interval="year")
    make_plan(client, "basic-monthly", amount=1000)
    make_plan(client, "enterprise-monthly", amount=9000, tier="enterprise")
    make_plan(client, "euro-monthly", amount=1500, currency="eur")


@pytest.fixture
def alice(client, plans):
    return make_customer(client, "alice")


# ---------------------------------------------------------------------------------------------------- C3: asking


def test_C3_change_waits_for_the_period_end_at_todays_price_and_changes_nothing_until_then(client, alice):
    sub = buy(client, alice)
    response = change(client, sub, "pro-yearly")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pending_change"] == {
        "plan": "pro-yearly",
        "price": {"amount": 20000, "currency": "usd"},
        "effective_at": FIRST_END,
        "expires_at": None,
        "client_secret": None,
    }
    assert body["pending_change"]["effective_at"] == body["current_period_end"]
    # Until the period end the plan, price, period and access stay as they are.
    assert body["plan"] == "pro-monthly" and body["price"] == {"amount": 2000, "currency": "usd"}
    assert body["cancel_at_period_end"] is False and body["status"] == "active"
    assert (body["current_period_start"], body["current_period_end"]) == (START, FIRST_END)
    assert subscription(client, sub["id"])["plan"] == "pro-monthly"
    assert access_of(client, alice)["plan"] == "pro-monthly"
    assert len(payments_of(client, alice)) == 1  # nothing charged now, nothing refunded (R1)
    assert "plan_change_scheduled" in notice_types(client, alice)
    [entry] = [e for e in audit(client, alice) if e["action"] == "subscription.plan_change_scheduled"]
    assert entry["policy_version"] == "2026-11-01" and entry["actor"] == "alice"
    assert entry["data"]["plan"] == "pro-yearly" and entry["data"]["price"] == 20000 and entry["data"]["refunded"] == 0
    [event] = [e for e in events_of(client, alice) if e["type"] == "subscription.plan_change_scheduled"]
    assert event["data"]["object"]["pending_change"]["plan"] == "pro-yearly"


def test_C3_the_customers_subscription_list_shows_the_pending_change_as_get_does(client, alice):
    sub = buy(client, alice)

    def listed() -> list[dict]:
        response = client.get(f"/v1/customers/{alice['id']}/subscriptions", headers=customer_headers("alice"))
        assert response.status_code == 200, response.text
        return response.json()["data"]

    assert [s["pending_change"] for s in listed()] == [None]
    assert change(client, sub, "pro-yearly").status_code == 200
    [item] = listed()
    assert item["pending_change"] == subscription(client, sub["id"])["pending_change"]
    assert item["pending_change"]["plan"] == "pro-yearly" and item["pending_change"]["effective_at"] == FIRST_END
    assert withdraw(client, sub).status_code == 200
    assert [s["pending_change"] for s in listed()] == [None]


def test_C3_when_defaults_to_period_end_and_ops_may_change_any_subscription(client, alice):
    sub = buy(client, alice)
    response = change(client, sub, "basic-monthly", who="ops")
    assert response.status_code == 200, response.text
    assert response.json()["pending_change"]["effective_at"] == FIRST_END
    [entry] = [e for e in audit(client, alice) if e["action"] == "subscription.plan_change_scheduled"]
    assert entry["actor"] == "staff-1" and entry["actor_role"] == "ops"


def test_C3_another_customer_gets_404_and_nothing_changes(client, alice):
    sub = buy(client, alice)
    make_customer(client, "mallory")
    response = change(client, sub, "pro-yearly", who="mallory")
    assert response.status_code == 404, response.text
    assert withdraw(client, sub, who="mallory").status_code == 404
    assert not [e for e in audit(client, alice) if "plan_change" in e["action"]]


def test_C3_a_second_change_replaces_the_first_and_one_stays_pending(client, alice):
    sub = buy(client, alice)
    assert change(client, sub, "pro-yearly").status_code == 200
    response = change(client, sub, "basic-monthly")
    assert response.status_code == 200, response.text
    assert response.json()["pending_change"]["plan"] == "basic-monthly"
    entries = [e for e in audit(client, alice) if e["action"] == "subscription.plan_change_scheduled"]
    assert len(entries) == 2
    assert entries[0]["data"]["replaced_change"] == entries[1]["data"]["change_id"]  # newest first


def test_C3_the_price_is_locked_the_day_the_change_is_asked(client, alice):
    sub = buy(client, alice)
    assert change(client, sub, "pro-yearly").json()["pending_change"]["price"]["amount"] == 20000
    response = client.patch("/v1/plans/pro-yearly", json={"amount": 25000}, headers=ops_headers())
    assert response.status_code == 200, response.text
    move_clock(client, FIRST_END)
    run_due(client)
    renewed = subscription(client, sub["id"])
    assert renewed["plan"] == "pro-yearly" and renewed["price"]["amount"] == 20000
    assert payments_of(client, alice)[0]["amount"] == 20000


# ---------------------------------------------------------------------------------------------------- refusals


def test_C3_refusals_same_plan_and_plans_not_available(client, alice):
    sub = buy(client, alice)
    refused(change(client, sub, "pro-monthly"), "same_plan")
    refused(change(client, sub, "euro-monthly"), "plan_not_available")  # another currency
    refused(change(client, sub, "no-such-plan"), "plan_not_available")
    response = client.patch("/v1/plans/pro-yearly", json={"active": False}, headers=ops_headers())
    assert response.status_code == 200, response.text
    refused(change(client, sub, "pro-yearly"), "plan_not_available")
    assert not [e for e in audit(client, alice) if "plan_change" in e["action"]]
    assert notice_types(client, alice) == ["receipt"]


def test_C4_now_to_a_plan_of_no_higher_yearly_value_is_not_an_upgrade(client, alice):
    sub = buy(client, alice)
    refused(change(client, sub, "basic-monthly", when="now"), "not_an_upgrade")
    assert subscription(client, sub["id"])["plan"] == "pro-monthly"


def test_C3_refused_for_an_incomplete_subscription(client, alice):
    response = client.post(
        "/v1/subscriptions",
        json={"customer_id": alice["id"], "plan": "pro-monthly", "payment_method": "pm_card_authenticationRequired"},
        headers=customer_headers("alice"),
    )
    assert response.status_code == 201 and response.json()["status"] == "incomplete", response.text
    refused(change(client, response.json(), "pro-yearly"), "subscription_incomplete")


def test_C3_refused_for_a_past_due_subscription(client, alice):
    sub = buy(client, alice)
    response = client.post(
        f"/v1/subscriptions/{sub['id']}/payment-method",
        json={"payment_method": "pm_card_chargeDeclined"},
        headers=customer_headers("alice"),
    )
    assert response.status_code == 200, response.text
    move_clock(client, FIRST_END)
    run_due(client)
    assert subscription(client, sub["id"])["status"] == "past_due"
    refused(change(client, sub, "pro-yearly"), "subscription_past_due")


def test_C3_refused_for_an_ended_subscription(client, alice):
    sub = buy(client, alice)
    assert cancel(client, sub).status_code == 200
    move_clock(client, FIRST_END)
    refused(change(client, sub, "pro-yearly"), "subscription_ended")  # ended at the period end, job or not
    run_due(client)
    refused(change(client, sub, "pro-yearly"), "subscription_ended")


def test_C3_R3_suspension_blocks_changes(client, alice):
    sub = buy(client, alice)
    response = client.post(f"/v1/customers/{alice['id']}/suspend", json={"reason": "review"}, headers=ops_headers())
    assert response.status_code == 200, response.text
    refused(change(client, sub, "pro-yearly"), "customer_suspended")
    refused(change(client, sub, "pro-yearly", who="ops"), "customer_suspended")


# ---------------------------------------------------------------------------------------------------- Idempotency-Key


def test_C3_idempotency_key_replays_the_first_answer_and_refuses_another_body(client, alice):
    sub = buy(client, alice)
    first = change(client, sub, "pro-yearly", key="chg-1")
    assert first.status_code == 200, first.text
    again = change(client, sub, "pro-yearly", key="chg-1")
    assert again.status_code == 200 and again.json() == first.json()
    assert len([e for e in audit(client, alice) if e["action"] == "subscription.plan_change_scheduled"]) == 1
    other = change(client, sub, "basic-monthly", key="chg-1")
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


# ---------------------------------------------------------------------------------------------------- withdrawal


def test_C3_withdrawn_change_renews_as_if_never_asked(client, alice):
    sub = buy(client, alice)
    assert change(client, sub, "pro-yearly").status_code == 200
    response = withdraw(client, sub)
    assert response.status_code == 200, response.text
    assert response.json()["pending_change"] is None and response.json()["plan"] == "pro-monthly"
    assert withdraw(client, sub).status_code == 200  # nothing pending: nothing changes
    withdrawals = [e for e in audit(client, alice) if e["action"] == "subscription.plan_change_withdrawn"]
    assert len(withdrawals) == 1 and withdrawals[0]["policy_version"] == "2026-11-01"
    move_clock(client, FIRST_END)
    run_due(client)
    renewed = subscription(client, sub["id"])
    assert renewed["plan"] == "pro-monthly" and renewed["price"]["amount"] == 2000
    assert renewed["current_period_end"] == "2030-03-15T12:00:00Z"
    assert payments_of(client, alice)[0]["amount"] == 2000
    assert "plan_changed" not in notice_types(client, alice)


# ---------------------------------------------------------------------------------------------------- at the period end


def test_C3_B3_B4_at_the_period_end_the_renewal_charges_the_new_plan_and_counts_its_periods_from_there(client, alice):
    sub = buy(client, alice)
    assert change(client, sub, "pro-yearly").status_code == 200
    move_clock(client, "2030-02-15T11:59:59Z")
    run_due(client)
    assert subscription(client, sub["id"])["plan"] == "pro-monthly"
    move_clock(client, FIRST_END)
    # B2: from the period end it is on the new plan for every purpose, before the job has run.
    due = subscription(client, sub["id"])
    assert due["plan"] == "pro-yearly" and due["price"]["amount"] == 20000 and due["pending_change"] is None
    assert (due["current_period_start"], due["current_period_end"]) == (FIRST_END, "2031-02-15T12:00:00Z")
    assert access_of(client, alice)["plan"] == "pro-yearly"
    refused(withdraw(client, sub), "charge_in_progress")  # it has taken effect: no withdrawing it now
    run_due(client)
    renewed = subscription(client, sub["id"])
    assert renewed["plan"] == "pro-yearly" and renewed["price"] == {"amount": 20000, "currency": "usd"}
    assert renewed["status"] == "active" and renewed["cancel_at_period_end"] is False
    assert (renewed["current_period_start"], renewed["current_period_end"]) == (FIRST_END, "2031-02-15T12:00:00Z")
    payment = payments_of(client, alice)[0]
    assert payment["purpose"] == "renewal" and payment["status"] == "succeeded" and payment["amount"] == 20000
    assert (payment["period_start"], payment["period_end"]) == (FIRST_END, "2031-02-15T12:00:00Z")
    access = access_of(client, alice)
    assert access["plan"] == "pro-yearly" and access["until"] == "2031-02-15T12:00:00Z"
    assert "plan_changed" in notice_types(client, alice)
    [entry] = [e for e in audit(client, alice) if e["action"] == "subscription.plan_changed"]
    assert entry["policy_version"] == "2026-11-01" and entry["actor"] == "system"
    assert entry["data"]["from_plan"] == "pro-monthly" and entry["data"]["plan"] == "pro-yearly"
    assert [e for e in events_of(client, alice) if e["type"] == "subscription.plan_changed"]
    assert withdraw(client, sub).json()["pending_change"] is None  # applied: nothing pending any more
    # The next renewal, a year on, on the new plan at its locked price.
    move_clock(client, "2031-02-15T12:00:00Z")
    run_due(client)
    again = subscription(client, sub["id"])
    assert again["current_period_end"] == "2032-02-15T12:00:00Z" and again["price"]["amount"] == 20000
    assert [p["amount"] for p in payments_of(client, alice)] == [20000, 20000, 2000]


def test_C3_B4_month_end_anchor_after_a_change_counts_from_the_change(client, alice):
    move_clock(client, "2030-01-31T09:00:00Z")
    sub = buy(client, alice)
    assert sub["current_period_end"] == "2030-02-28T09:00:00Z"  # B4: clamped to February's last day
    assert change(client, sub, "basic-monthly").json()["pending_change"]["effective_at"] == "2030-02-28T09:00:00Z"
    move_clock(client, "2030-02-28T09:00:00Z")
    run_due(client)
    moved = subscription(client, sub["id"])
    assert moved["plan"] == "basic-monthly" and moved["price"]["amount"] == 1000
    # C3: its periods are counted from the period end it took effect at, the 28th.
    assert (moved["current_period_start"], moved["current_period_end"]) == (
        "2030-02-28T09:00:00Z",
        "2030-03-28T09:00:00Z",
    )
    move_clock(client, "2030-03-28T09:00:00Z")
    run_due(client)
    assert subscription(client, sub["id"])["current_period_end"] == "2030-04-28T09:00:00Z"


def test_C3_B4_leap_day_anchor_after_a_change_to_yearly(client, alice):
    move_clock(client, "2032-01-29T10:00:00Z")
    sub = buy(client, alice)
    assert sub["current_period_end"] == "2032-02-29T10:00:00Z"
    assert change(client, sub, "pro-yearly").status_code == 200
    move_clock(client, "2032-02-29T10:00:00Z")
    run_due(client)
    moved = subscription(client, sub["id"])
    assert moved["plan"] == "pro-yearly"
    assert (moved["current_period_start"], moved["current_period_end"]) == (
        "2032-02-29T10:00:00Z",
        "2033-02-28T10:00:00Z",  # B4: 29 Feb renews on 28 Feb in common years
    )
    move_clock(client, "2033-02-28T10:00:00Z")
    run_due(client)
    assert subscription(client, sub["id"])["current_period_end"] == "2034-02-28T10:00:00Z"


def test_C3_B5_a_failed_renewal_after_a_change_is_retried_at_the_new_price_on_the_new_plan(client, alice):
    sub = buy(client, alice)
    assert change(client, sub, "pro-yearly").status_code == 200
    response = client.post(
        f"/v1/subscriptions/{sub['id']}/payment-method",
        json={"payment_method": "pm_card_chargeDeclined"},
        headers=customer_headers("alice"),
    )
    assert response.status_code == 200, response.text
    move_clock(client, FIRST_END)
    run_due(client)
    due = subscription(client, sub["id"])
    assert due["status"] == "past_due" and due["plan"] == "pro-yearly" and due["price"]["amount"] == 20000
    assert due["next_retry_at"] == "2030-02-16T12:00:00Z"
    failed = payments_of(client, alice)[0]
    assert failed["status"] == "failed" and failed["amount"] == 20000
    response = client.post(
        f"/v1/subscriptions/{sub['id']}/payment-method",
        json={"payment_method": "pm_card_visa"},
        headers=customer_headers("alice"),
    )
    assert response.status_code == 200, response.text
    move_clock(client, "2030-02-16T12:00:00Z")
    run_due(client)
    paid = subscription(client, sub["id"])
    assert paid["status"] == "active" and paid["plan"] == "pro-yearly"
    assert (paid["current_period_start"], paid["current_period_end"]) == (FIRST_END, "2031-02-15T12:00:00Z")
    assert payments_of(client, alice)[0]["amount"] == 20000


def test_C3_B2_a_change_asked_after_the_period_end_applies_at_the_end_of_the_next_period(client, alice):
    sub = buy(client, alice)
    move_clock(client, "2030-02-15T13:00:00Z")  # the renewal is due; the job has not run yet
    response = change(client, sub, "pro-yearly")
    assert response.status_code == 200, response.text
    assert response.json()["pending_change"]["effective_at"] == "2030-03-15T12:00:00Z"
    assert response.json()["current_period_end"] == "2030-03-15T12:00:00Z"
    run_due(client)
    renewed = subscription(client, sub["id"])
    assert renewed["plan"] == "pro-monthly" and renewed["current_period_end"] == "2030-03-15T12:00:00Z"
    assert payments_of(client, alice)[0]["amount"] == 2000
    move_clock(client, "2030-03-15T12:00:00Z")
    run_due(client)
    moved = subscription(client, sub["id"])
    assert moved["plan"] == "pro-yearly" and moved["current_period_end"] == "2031-03-15T12:00:00Z"
    assert payments_of(client, alice)[0]["amount"] == 20000


def test_C3_a_plan_deactivated_after_the_change_was_asked_still_takes_effect(client, alice):
    sub = buy(client, alice)
    assert change(client, sub, "enterprise-monthly").status_code == 200
    response = client.patch("/v1/plans/enterprise-monthly", json={"active": False}, headers=ops_headers())
    assert response.status_code == 200, response.text
    move_clock(client, FIRST_END)
    run_due(client)
    moved = subscription(client, sub["id"])
    assert moved["plan"] == "enterprise-monthly" and moved["price"]["amount"] == 9000


# ---------------------------------------------------------------------------------------------------- interplay


def test_C3_the_subscription_shows_its_pending_change(client, alice):
    sub = buy(client, alice)
    assert subscription(client, sub["id"])["pending_change"] is None
    assert change(client, sub, "pro-yearly").status_code == 200
    shown = client.get(f"/v1/subscriptions/{sub['id']}", headers=customer_headers("alice")).json()
    assert shown["pending_change"]["plan"] == "pro-yearly" and shown["pending_change"]["effective_at"] == FIRST_END


def test_C1_C3_cancelling_withdraws_the_pending_change(client, alice):
    sub = buy(client, alice)
    assert change(client, sub, "pro-yearly").status_code == 200
    response = cancel(client, sub)
    assert response.status_code == 200, response.text
    assert response.json()["cancel_at_period_end"] is True
    assert subscription(client, sub["id"])["pending_change"] is None
    [entry] = [e for e in audit(client, alice) if e["action"] == "subscription.plan_change_withdrawn"]
    assert entry["data"]["by"] == "cancellation"
    move_clock(client, FIRST_END)
    run_due(client)
    ended = subscription(client, sub["id"])
    assert ended["status"] == "canceled" and ended["plan"] == "pro-monthly"
    assert len(payments_of(client, alice)) == 1  # nothing charged at the period end


def test_C3_C2_a_change_withdraws_the_scheduled_cancellation(client, alice):
    sub = buy(client, alice)
    assert cancel(client, sub).json()["cancel_at_period_end"] is True
    response = change(client, sub, "pro-yearly")
    assert response.status_code == 200, response.text
    assert response.json()["cancel_at_period_end"] is False and response.json()["canceled_at"] is None
    [entry] = [e for e in audit(client, alice) if e["action"] == "subscription.plan_change_scheduled"]
    assert entry["data"]["withdrew_cancellation"] is True
    move_clock(client, FIRST_END)
    run_due(client)
    moved = subscription(client, sub["id"])
    assert moved["status"] == "active" and moved["plan"] == "pro-yearly"


def test_C3_T6_trials_are_unaffected_by_a_change(client, alice):
    response = client.post(
        "/v1/trials", json={"customer_id": alice["id"], "plan": "pro-monthly"}, headers=customer_headers("alice")
    )
    assert response.status_code == 201, response.text
    sub = buy(client, alice)  # T6: buying during the trial forfeits it
    trials_before = client.get(f"/v1/customers/{alice['id']}/trials", headers=ops_headers()).json()["data"]
    assert [t["status"] for t in trials_before] == ["forfeited"]
    assert change(client, sub, "pro-yearly").status_code == 200
    move_clock(client, FIRST_END)
    run_due(client)
    trials_after = client.get(f"/v1/customers/{alice['id']}/trials", headers=ops_headers()).json()["data"]
    assert trials_after == trials_before
    assert access_of(client, alice)["source"] == "subscription"
