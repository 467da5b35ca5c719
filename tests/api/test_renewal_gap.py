"""The gap between a period end and the job that charges the renewal (issue 14), through HTTP.

B2: the renewal is due at the period-end instant, whenever the job runs; from that instant the subscription is in
its next period for every purpose (access, a cancellation or its undo asked then). C1: a `past_due` subscription
ends at once when cancelled, with the ending confirmation and no further retry.

A subscription bought at START (2030-01-15T12:00Z) has its first period end at PERIOD_END (2030-02-15T12:00Z)."""

from __future__ import annotations

import datetime as _dt

from tests.api.test_dunning import declining_subscription, failures, of_type
from tests.api.test_subscriptions import (
    SECOND,
    access_of,
    at,
    buy,
    cancel,
    notice_types,
    payments_of,
    resume,
    subscription,
)
from tests.conftest import make_customer, make_plan, move_clock, run_due

PERIOD_END = "2030-02-15T12:00:00Z"
NEXT_END = "2030-03-15T12:00:00Z"
HOURS_12 = _dt.timedelta(hours=12)


def test_B2_access_continues_from_the_period_end_before_the_renewal_job_runs(client):
    """B2: at and after the period-end instant, before run-due, an active subscription is in its next period and
    gives access until that period's end; the answer is the same once the job has charged the renewal. A
    cancellation scheduled before that period end (C1) ends access at that instant, also before the job runs."""
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    bob = make_customer(client, "bob")
    sub = buy(client, alice)
    assert sub["current_period_end"] == PERIOD_END
    assert cancel(client, buy(client, bob)).status_code == 200
    expected = {
        "object": "access",
        "has_access": True,
        "source": "subscription",
        "plan": "pro-monthly",
        "until": NEXT_END,
        "reason": "subscription_active",
    }
    for moment in (PERIOD_END, at(PERIOD_END, SECOND), at(PERIOD_END, HOURS_12)):
        move_clock(client, moment)
        assert subscription(client, sub["id"])["status"] == "active"
        assert access_of(client, alice) == expected, moment
        assert access_of(client, bob)["has_access"] is False  # C1: cancelled for that period end
    jobs = run_due(client)
    assert jobs["subscription_renewals"] == 1 and jobs["subscription_period_ends"] == 1
    assert access_of(client, alice) == expected  # the job changes nothing in the answer
    assert access_of(client, bob)["has_access"] is False


def test_B2_C1_cancel_in_the_gap_renews_and_ends_at_the_end_of_the_renewed_period(client):
    """B2/C1: a cancellation asked at period end + 12 h, before run-due, is asked in the next period: the renewal
    that was due is charged, and the subscription ends at the end of the renewed period, the date the response and
    the confirmation name."""
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice)
    asked = at(PERIOD_END, HOURS_12)
    move_clock(client, asked)
    response = cancel(client, sub)
    assert response.status_code == 200, response.text
    canceled = response.json()
    assert canceled["status"] == "active" and canceled["cancel_at_period_end"] is True
    assert canceled["canceled_at"] == asked and canceled["ended_at"] is None
    # The period the customer is in: the renewed one, in the response and when read back.
    assert (canceled["current_period_start"], canceled["current_period_end"]) == (PERIOD_END, NEXT_END)
    assert subscription(client, sub["id"]) == canceled
    [scheduled] = [n for n in of_type(client, alice, "cancellation_scheduled")]
    assert scheduled["subject"] == "Your Pro-Monthly subscription will end on 15 March 2030, 12:00 UTC"
    assert "15 March 2030" in scheduled["body"]
    assert access_of(client, alice)["until"] == NEXT_END
    # The renewal job still charges the renewal that was due, and does not end the subscription.
    jobs = run_due(client)
    assert jobs["subscription_renewals"] == 1 and jobs["subscription_period_ends"] == 0
    [renewal, purchase] = payments_of(client, alice)
    assert purchase["purpose"] == "purchase"
    assert renewal["purpose"] == "renewal" and renewal["status"] == "succeeded" and renewal["amount"] == 2000
    assert (renewal["period_start"], renewal["period_end"]) == (PERIOD_END, NEXT_END)
    assert subscription(client, sub["id"]) == canceled
    # Access until the end of the renewed period, then the cancellation takes effect: no further charge.
    move_clock(client, at(NEXT_END, -SECOND))
    jobs = run_due(client)
    assert jobs["subscription_renewals"] == 0 and jobs["subscription_period_ends"] == 0
    assert access_of(client, alice)["has_access"] is True
    move_clock(client, at(NEXT_END, _dt.timedelta(hours=1)))
    assert access_of(client, alice)["has_access"] is False
    jobs = run_due(client)
    assert jobs["subscription_renewals"] == 0 and jobs["subscription_period_ends"] == 1
    ended = subscription(client, sub["id"])
    assert ended["status"] == "canceled" and ended["ended_reason"] == "canceled" and ended["ended_at"] == NEXT_END
    assert notice_types(client, alice).count("subscription_ended") == 1
    move_clock(client, "2030-06-01T00:00:00Z")
    run_due(client)
    assert len(payments_of(client, alice)) == 2


def test_C2_B2_resume_in_the_gap_withdraws_a_cancellation_asked_in_the_gap(client):
    """C2/B2: a cancellation asked in the gap applies to the renewed period's end, so until then it can be
    withdrawn, also before the job has charged the renewal; the subscription then renews as if nothing happened."""
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    sub = buy(client, alice)
    move_clock(client, at(PERIOD_END, HOURS_12))
    assert cancel(client, sub).status_code == 200
    move_clock(client, at(PERIOD_END, _dt.timedelta(hours=13)))
    response = resume(client, sub)
    assert response.status_code == 200, response.text
    resumed = response.json()
    assert resumed["status"] == "active" and resumed["cancel_at_period_end"] is False
    assert resumed["canceled_at"] is None
    assert (resumed["current_period_start"], resumed["current_period_end"]) == (PERIOD_END, NEXT_END)
    jobs = run_due(client)
    assert jobs["subscription_renewals"] == 1 and jobs["subscription_period_ends"] == 0
    move_clock(client, NEXT_END)
    jobs = run_due(client)
    assert jobs["subscription_renewals"] == 1 and jobs["subscription_period_ends"] == 0
    assert [p["status"] for p in payments_of(client, alice)] == ["succeeded"] * 3
    assert "subscription_ended" not in notice_types(client, alice)


def test_C1_cancelling_past_due_ends_at_once_with_the_ending_confirmation_and_no_more_retries(client):
    """C1/B5: a past_due subscription cancelled ends at once: the customer gets the `subscription_ended`
    confirmation, the remaining retries are not made and nothing is refunded."""
    alice, sub = declining_subscription(client)
    move_clock(client, PERIOD_END)
    assert run_due(client)["subscription_renewals"] == 1
    assert subscription(client, sub["id"])["status"] == "past_due"
    asked = at(PERIOD_END, HOURS_12)
    move_clock(client, asked)
    response = cancel(client, sub, who="alice")
    assert response.status_code == 200, response.text
    ended = response.json()
    assert ended["status"] == "canceled" and ended["ended_reason"] == "canceled"
    assert ended["ended_at"] == asked and ended["next_retry_at"] is None
    [confirmation] = of_type(client, alice, "subscription_ended")
    assert "as you cancelled it" in confirmation["body"]
    assert access_of(client, alice)["has_access"] is False
    # After every retry date: no retry is charged, nothing else is sent.
    move_clock(client, "2030-02-23T12:00:00Z")
    assert run_due(client)["subscription_retries"] == 0
    assert [p["purpose"] for p in failures(client, alice)] == ["renewal"]
    assert len(payments_of(client, alice)) == 2
    assert all(p["refunded_amount"] == 0 for p in payments_of(client, alice))
    assert len(of_type(client, alice, "subscription_ended")) == 1
    assert len(of_type(client, alice, "payment_failed")) == 1
    assert subscription(client, sub["id"]) == ended


def test_C1_B2_B5_cancel_in_the_gap_then_a_declined_renewal_ends_at_the_failure_never_before_the_cancellation(client):
    """C1/B2/B5 (review finding 4): a cancellation asked in the gap (period end + 12 h) belongs to the renewed
    period; when the due renewal is then declined, the subscription would be past_due, and C1 ends a past_due
    subscription at once when cancelled: it ends at the failure (ended_at = the failure, never before
    canceled_at), reason canceled, with no retries, and not at the old period end as if cancelled before it."""
    alice, sub = declining_subscription(client)
    asked = at(PERIOD_END, HOURS_12)
    move_clock(client, asked)
    response = cancel(client, sub, who="alice")
    assert response.status_code == 200, response.text
    assert response.json()["current_period_end"] == NEXT_END
    failed_at = at(PERIOD_END, _dt.timedelta(hours=13))
    move_clock(client, failed_at)
    assert run_due(client)["subscription_renewals"] == 1
    ended = subscription(client, sub["id"])
    assert ended["status"] == "canceled" and ended["ended_reason"] == "canceled"
    assert ended["canceled_at"] == asked
    assert ended["ended_at"] == failed_at and ended["ended_at"] >= ended["canceled_at"]
    assert ended["next_retry_at"] is None
    assert access_of(client, alice)["has_access"] is False
    [confirmation] = of_type(client, alice, "subscription_ended")
    assert "as you cancelled it" in confirmation["body"]
    # After every retry date: no retry is charged.
    move_clock(client, "2030-02-23T12:00:00Z")
    assert run_due(client)["subscription_retries"] == 0
    assert [p["purpose"] for p in failures(client, alice)] == ["renewal"]
    assert subscription(client, sub["id"]) == ended
