"""The gap between a period end and the job that charges the renewal (issue 14), through HTTP.

B2: the renewal is due at the period-end instant, whenever the job runs; from that instant the subscription is in
its next period for every purpose (access, a cancellation or its undo asked then). C1: a `past_due` subscription
ends at once when cancelled, with the ending confirmation and no further retry.

A subscription bought at START (2030-01-15T12:00Z) has its first period end at PERIOD_END (2030-02-15T12:00Z)."""

from __future__ import annotations

import datetime as _dt

from tests.api.test_subscriptions import SECOND, access_of, at, buy, cancel, subscription
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
    expected = {"object": "access", "has_access": True, "source": "subscription", "plan": "pro-monthly",
                "until": NEXT_END, "reason": "subscription_active"}
    for moment in (PERIOD_END, at(PERIOD_END, SECOND), at(PERIOD_END, HOURS_12)):
        move_clock(client, moment)
        assert subscription(client, sub["id"])["status"] == "active"
        assert access_of(client, alice) == expected, moment
        assert access_of(client, bob)["has_access"] is False  # C1: cancelled for that period end
    jobs = run_due(client)
    assert jobs["subscription_renewals"] == 1 and jobs["subscription_period_ends"] == 1
    assert access_of(client, alice) == expected  # the job changes nothing in the answer
    assert access_of(client, bob)["has_access"] is False
