"""Failed renewals (B5): past_due, retries 1, 3 and 7 days after the period end, access while retries remain,
recovery on the unchanged anchor, and the end with reason payment_failed once the retries are exhausted.

A subscription bought with a working card at START (2030-01-15T12:00Z, period end 2030-02-15T12:00Z) has its saved
method switched to a declining one, so its renewal fails."""

from __future__ import annotations

from tests.api.test_subscriptions import (
    SECOND,
    access_of,
    at,
    buy,
    client_with,
    payments_of,
    policy_dir,
    subscription,
)
from tests.api.test_trials import notices
from tests.conftest import (
    START,
    customer_headers,
    make_customer,
    make_plan,
    make_settings,
    move_clock,
    run_due,
)

PERIOD_END = "2030-02-15T12:00:00Z"
RETRY_1 = "2030-02-16T12:00:00Z"  # period end + 1 day
RETRY_2 = "2030-02-18T12:00:00Z"  # period end + 3 days (not the first retry + 3 days)
RETRY_3 = "2030-02-22T12:00:00Z"  # period end + 7 days (not the second retry + 7 days)


def switch_method(client, sub: dict, payment_method: str, who: str = "alice") -> dict:
    response = client.post(
        f"/v1/subscriptions/{sub['id']}/payment-method",
        json={"payment_method": payment_method},
        headers=customer_headers(who),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["payment_method"] == payment_method
    return body


def declining_subscription(client) -> tuple[dict, dict]:
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice)
    assert sub["current_period_end"] == PERIOD_END
    switched = switch_method(client, sub, "pm_card_chargeDeclined")
    assert switched["status"] == "active" and switched["current_period_end"] == PERIOD_END
    return alice, sub


def failures(client, customer: dict) -> list[dict]:
    return [p for p in reversed(payments_of(client, customer)) if p["status"] == "failed"]


def of_type(client, customer: dict, kind: str) -> list[dict]:
    return [n for n in notices(client, customer) if n["type"] == kind]


def test_B5_failed_renewal_is_past_due_and_retried_from_the_period_end(client):
    alice, sub = declining_subscription(client)
    move_clock(client, PERIOD_END)
    jobs = run_due(client)
    assert jobs["subscription_renewals"] == 1 and jobs["subscription_retries"] == 0
    due = subscription(client, sub["id"])
    assert due["status"] == "past_due" and due["next_retry_at"] == RETRY_1
    assert (due["current_period_start"], due["current_period_end"]) == (START, PERIOD_END)  # no new period
    [failed] = failures(client, alice)
    assert failed["purpose"] == "renewal" and failed["failure_code"] == "card_declined"
    assert failed["amount"] == 2000 and failed["period_start"] is None
    [notice] = of_type(client, alice, "payment_failed")
    assert "20.00 USD" in notice["body"] and "16 February 2030, 12:00 UTC" in notice["body"]
    access = access_of(client, alice)
    assert access["has_access"] is True and access["reason"] == "subscription_past_due"
    # Retries at +1, +3 and +7 days from the period end; nothing a second before each.
    for retry_at, next_retry in ((RETRY_1, RETRY_2), (RETRY_2, RETRY_3)):
        move_clock(client, at(retry_at, -SECOND))
        assert run_due(client)["subscription_retries"] == 0
        move_clock(client, retry_at)
        assert run_due(client)["subscription_retries"] == 1
        assert run_due(client)["subscription_retries"] == 0
        state = subscription(client, sub["id"])
        assert state["status"] == "past_due" and state["next_retry_at"] == next_retry
        assert access_of(client, alice)["has_access"] is True
    assert [p["purpose"] for p in failures(client, alice)] == ["renewal", "retry", "retry"]
    assert [p["created_at"] for p in failures(client, alice)] == [PERIOD_END, RETRY_1, RETRY_2]
    assert len(of_type(client, alice, "payment_failed")) == 3
    assert of_type(client, alice, "subscription_ended") == []


def test_B5_fixing_the_method_before_the_second_retry_recovers_on_the_old_anchor(client):
    alice, sub = declining_subscription(client)
    move_clock(client, PERIOD_END)
    run_due(client)
    move_clock(client, RETRY_1)
    run_due(client)
    assert subscription(client, sub["id"])["next_retry_at"] == RETRY_2
    move_clock(client, "2030-02-17T08:00:00Z")
    assert switch_method(client, sub, "pm_card_visa")["status"] == "past_due"  # nothing is charged at once
    assert len(payments_of(client, alice)) == 3
    move_clock(client, RETRY_2)
    assert run_due(client)["subscription_retries"] == 1
    recovered = subscription(client, sub["id"])
    assert recovered["status"] == "active" and recovered["next_retry_at"] is None
    # Anchor unchanged: the new period starts at the old period end, not at the retry.
    assert (recovered["current_period_start"], recovered["current_period_end"]) == (PERIOD_END, "2030-03-15T12:00:00Z")
    listed = list(reversed(payments_of(client, alice)))
    assert [(p["purpose"], p["status"]) for p in listed] == [
        ("purchase", "succeeded"),
        ("renewal", "failed"),
        ("retry", "failed"),
        ("retry", "succeeded"),
    ]
    assert (listed[-1]["period_start"], listed[-1]["period_end"]) == (PERIOD_END, "2030-03-15T12:00:00Z")
    assert listed[-1]["amount"] == 2000 and listed[-1]["created_at"] == RETRY_2
    assert len(of_type(client, alice, "payment_failed")) == 2 and len(of_type(client, alice, "receipt")) == 2
    assert access_of(client, alice)["reason"] == "subscription_active"
    # No more retries; the next renewal is on the anchor.
    move_clock(client, RETRY_3)
    assert run_due(client)["subscription_retries"] == 0
    move_clock(client, "2030-03-15T12:00:00Z")
    assert run_due(client)["subscription_renewals"] == 1
    renewed = subscription(client, sub["id"])
    assert (renewed["current_period_start"], renewed["current_period_end"]) == (
        "2030-03-15T12:00:00Z",
        "2030-04-15T12:00:00Z",
    )
    assert of_type(client, alice, "subscription_ended") == []


def test_B5_never_fixed_ends_with_payment_failed_after_the_last_retry(client):
    alice, sub = declining_subscription(client)
    for when in (PERIOD_END, RETRY_1, RETRY_2):
        move_clock(client, when)
        run_due(client)
        assert subscription(client, sub["id"])["status"] == "past_due"
    move_clock(client, "2030-02-21T12:00:00Z")
    assert access_of(client, alice)["has_access"] is True  # retries remain
    move_clock(client, RETRY_3)
    assert run_due(client)["subscription_retries"] == 1
    ended = subscription(client, sub["id"])
    assert ended["status"] == "canceled" and ended["ended_reason"] == "payment_failed"
    assert ended["ended_at"] == RETRY_3 and ended["next_retry_at"] is None
    assert access_of(client, alice)["has_access"] is False
    assert [p["purpose"] for p in failures(client, alice)] == ["renewal", "retry", "retry", "retry"]
    assert len(of_type(client, alice, "payment_failed")) == 4  # one per failure
    [last_failed] = [n for n in of_type(client, alice, "payment_failed") if "last attempt" in n["body"]]
    assert last_failed
    [ended_notice] = of_type(client, alice, "subscription_ended")
    assert "could not be collected" in ended_notice["body"]
    # Nothing is charged after the end, however far the clock goes.
    listed = payments_of(client, alice)
    move_clock(client, "2031-01-01T00:00:00Z")
    jobs = run_due(client)
    assert jobs["subscription_retries"] == 0 and jobs["subscription_renewals"] == 0
    assert payments_of(client, alice) == listed
    assert subscription(client, sub["id"]) == ended
    assert [p["status"] for p in listed].count("succeeded") == 1


def test_B5_a_shorter_retry_schedule_ends_after_one_retry(clean_db, tmp_path):
    client = client_with(make_settings(clean_db, policy_dir=policy_dir(tmp_path, retry_schedule_days="[2]")))
    try:
        alice, sub = declining_subscription(client)
        move_clock(client, PERIOD_END)
        run_due(client)
        due = subscription(client, sub["id"])
        assert due["status"] == "past_due" and due["next_retry_at"] == "2030-02-17T12:00:00Z"
        assert access_of(client, alice)["until"] == "2030-02-17T12:00:00Z"
        move_clock(client, "2030-02-17T12:00:00Z")
        assert run_due(client)["subscription_retries"] == 1
        ended = subscription(client, sub["id"])
        assert ended["status"] == "canceled" and ended["ended_reason"] == "payment_failed"
        assert [p["purpose"] for p in failures(client, alice)] == ["renewal", "retry"]
        assert len(of_type(client, alice, "payment_failed")) == 2
        assert len(of_type(client, alice, "subscription_ended")) == 1
        assert access_of(client, alice)["has_access"] is False
    finally:
        client.__exit__(None, None, None)


def test_B5_changing_the_method_is_the_owners_and_refused_after_the_end(client):
    _, sub = declining_subscription(client)
    make_customer(client, "mallory")
    response = client.post(
        f"/v1/subscriptions/{sub['id']}/payment-method",
        json={"payment_method": "pm_card_visa"},
        headers=customer_headers("mallory"),
    )
    assert response.status_code == 404
    assert subscription(client, sub["id"])["payment_method"] == "pm_card_chargeDeclined"
    bad = client.post(
        f"/v1/subscriptions/{sub['id']}/payment-method",
        json={"payment_method": "4242424242424242"},
        headers=customer_headers("alice"),
    )
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
    for when in (PERIOD_END, RETRY_1, RETRY_2, RETRY_3):
        move_clock(client, when)
        run_due(client)
    assert subscription(client, sub["id"])["status"] == "canceled"
    late = client.post(
        f"/v1/subscriptions/{sub['id']}/payment-method",
        json={"payment_method": "pm_card_visa"},
        headers=customer_headers("alice"),
    )
    assert late.status_code == 409 and late.json()["code"] == "subscription_ended"
