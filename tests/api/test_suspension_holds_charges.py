"""R3 with B5: no renewal or retry is charged while the customer is suspended. A charge that falls due then waits,
and is made at the first run after the suspension is lifted, on the unchanged anchor; if it fails, the retries
count from the day of the lifting. Terminating a suspended customer charges nothing.

A subscription bought at START (2030-01-15T12:00Z) has its period end at 2030-02-15T12:00Z; retries are 1, 3 and
7 days after it (tests/api/test_dunning.py)."""

from __future__ import annotations

from tests.api.test_dunning import PERIOD_END, RETRY_1, declining_subscription, failures, switch_method
from tests.api.test_subscriptions import access_of, buy, payments_of, subscription
from tests.conftest import START, make_customer, make_plan, move_clock, ops_headers, run_due

NEXT_PERIOD_END = "2030-03-15T12:00:00Z"  # the anchor's: START + 2 months
LIFTED = "2030-02-20T09:00:00Z"  # five days after the period end, at another hour of the day


def suspend(client, customer: dict) -> None:
    response = client.post(
        f"/v1/customers/{customer['id']}/suspend", json={"reason": "chargeback investigation"}, headers=ops_headers()
    )
    assert response.status_code == 200 and response.json()["status"] == "suspended", response.text


def unsuspend(client, customer: dict) -> None:
    response = client.post(
        f"/v1/customers/{customer['id']}/unsuspend", json={"reason": "resolved"}, headers=ops_headers()
    )
    assert response.status_code == 200 and response.json()["status"] == "active", response.text


def test_R3_no_renewal_is_charged_while_suspended_it_is_charged_after_the_lifting_on_the_anchor(client):
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice)
    move_clock(client, "2030-02-01T00:00:00Z")
    suspend(client, alice)
    move_clock(client, LIFTED)
    jobs = run_due(client)
    assert jobs["subscription_renewals"] == 0 and jobs["subscription_retries"] == 0  # held
    assert [p["purpose"] for p in payments_of(client, alice)] == ["purchase"]
    held = subscription(client, sub["id"])
    # B2/R3: the period keeps running: it shows the period it is in, whose charge waits for the lifting.
    assert (held["status"], held["current_period_start"], held["current_period_end"]) == (
        "active",
        PERIOD_END,
        NEXT_PERIOD_END,
    )
    assert access_of(client, alice)["has_access"] is False  # suspended

    unsuspend(client, alice)
    assert run_due(client)["subscription_renewals"] == 1  # the held renewal, at the next run after the lifting
    renewed = subscription(client, sub["id"])
    # The anchor is unchanged: the suspended time is not given back.
    assert (renewed["status"], renewed["current_period_start"], renewed["current_period_end"]) == (
        "active",
        PERIOD_END,
        NEXT_PERIOD_END,
    )
    renewal, _purchase = payments_of(client, alice)
    assert (renewal["purpose"], renewal["status"], renewal["amount"]) == ("renewal", "succeeded", 2000)
    assert (renewal["period_start"], renewal["period_end"]) == (PERIOD_END, NEXT_PERIOD_END)
    assert access_of(client, alice)["has_access"] is True
    assert run_due(client)["subscription_renewals"] == 0  # charged once


def test_R3_B5_a_held_renewal_that_fails_after_the_lifting_is_retried_1_3_7_days_after_the_lifting(client):
    alice, sub = declining_subscription(client)
    move_clock(client, "2030-02-10T00:00:00Z")
    suspend(client, alice)
    move_clock(client, LIFTED)
    assert run_due(client)["subscription_renewals"] == 0
    unsuspend(client, alice)
    assert run_due(client)["subscription_renewals"] == 1
    due = subscription(client, sub["id"])
    assert due["status"] == "past_due" and due["next_retry_at"] == "2030-02-21T09:00:00Z"  # lifting + 1 day
    # B5: access continues while retries remain, i.e. until the last retry counted from the lifting.
    move_clock(client, "2030-02-23T08:00:00Z")  # after period end + 7 days, before the second retry
    assert run_due(client)["subscription_retries"] == 1  # the first retry, lifting + 1 day
    assert subscription(client, sub["id"])["next_retry_at"] == "2030-02-23T09:00:00Z"  # lifting + 3 days
    access = access_of(client, alice)
    assert access["has_access"] is True and access["reason"] == "subscription_past_due"
    move_clock(client, "2030-02-23T09:00:00Z")
    assert run_due(client)["subscription_retries"] == 1
    assert subscription(client, sub["id"])["next_retry_at"] == "2030-02-27T09:00:00Z"  # lifting + 7 days
    move_clock(client, "2030-02-27T09:00:00Z")
    assert run_due(client)["subscription_retries"] == 1
    ended = subscription(client, sub["id"])
    assert ended["status"] == "canceled" and ended["ended_reason"] == "payment_failed"
    assert len(failures(client, alice)) == 4  # the renewal and its three retries, nothing while suspended


def test_R3_B5_retries_of_a_past_due_subscription_are_held_while_suspended(client):
    """B5 retries are renewal charges: none is made while the customer is suspended. The retry that fell due
    meanwhile is made at the first run after the lifting, and the retries after it count from the lifting."""
    alice, sub = declining_subscription(client)
    move_clock(client, PERIOD_END)
    assert run_due(client)["subscription_renewals"] == 1
    assert subscription(client, sub["id"])["next_retry_at"] == RETRY_1
    move_clock(client, "2030-02-15T13:00:00Z")
    suspend(client, alice)
    move_clock(client, "2030-02-19T12:00:00Z")  # the retries at +1 and +3 days fell due meanwhile
    assert run_due(client)["subscription_retries"] == 0
    assert len(failures(client, alice)) == 1
    unsuspend(client, alice)
    assert run_due(client)["subscription_retries"] == 1  # one retry, not one per missed date
    after = subscription(client, sub["id"])
    assert after["status"] == "past_due" and after["next_retry_at"] == "2030-02-22T12:00:00Z"  # lifting + 3 days
    assert len(failures(client, alice)) == 2
    # A working card by then: the retry renews on the unchanged anchor.
    switch_method(client, sub, "pm_card_visa")
    move_clock(client, "2030-02-22T12:00:00Z")
    assert run_due(client)["subscription_retries"] == 1
    renewed = subscription(client, sub["id"])
    assert (renewed["status"], renewed["current_period_start"], renewed["current_period_end"]) == (
        "active",
        PERIOD_END,
        NEXT_PERIOD_END,
    )


def test_R3_terminating_a_suspended_customer_charges_nothing(client):
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice)
    suspend(client, alice)
    move_clock(client, LIFTED)
    run_due(client)
    response = client.post(
        f"/v1/customers/{alice['id']}/terminate", json={"reason": "terms violation"}, headers=ops_headers()
    )
    assert response.status_code == 200, response.text
    move_clock(client, "2030-06-01T00:00:00Z")
    run_due(client)
    assert [(p["purpose"], p["status"]) for p in payments_of(client, alice)] == [("purchase", "succeeded")]
    ended = subscription(client, sub["id"])
    assert ended["status"] == "canceled" and ended["ended_reason"] == "terminated"
    assert ended["current_period_start"] == START
