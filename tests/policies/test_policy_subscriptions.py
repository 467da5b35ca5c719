"""B2/B5/C1/R1/R3/T3: renewal, failed charges, cancellation and access."""

from datetime import UTC, datetime, timedelta

import pytest

from policies import (
    AccessDecision,
    AccessFacts,
    FailureOutcome,
    PolicyDocument,
    access,
    after_failed_charge,
    cancellation_refund,
    period_end_action,
    renewal_due,
)

END = datetime(2027, 2, 28, 12, tzinfo=UTC)
DEFAULT = PolicyDocument(version="d", effective_from=datetime(2026, 1, 1, tzinfo=UTC))
NO_RETRIES = PolicyDocument(version="n", effective_from=datetime(2026, 1, 1, tzinfo=UTC), retry_schedule_days=())


def days(n: int) -> timedelta:
    return timedelta(days=n)


@pytest.mark.parametrize(
    "policy, failures, expected",
    [
        pytest.param(DEFAULT, 1, FailureOutcome("past_due", END + days(1), None), id="B5-renewal-failed-retry-day-1"),
        pytest.param(DEFAULT, 2, FailureOutcome("past_due", END + days(3), None), id="B5-first-retry-failed-day-3"),
        pytest.param(DEFAULT, 3, FailureOutcome("past_due", END + days(7), None), id="B5-second-retry-failed-day-7"),
        pytest.param(DEFAULT, 4, FailureOutcome("ended", None, "payment_failed"), id="B5-last-retry-failed-ends"),
        pytest.param(DEFAULT, 9, FailureOutcome("ended", None, "payment_failed"), id="B5-beyond-schedule-ends"),
        pytest.param(NO_RETRIES, 1, FailureOutcome("ended", None, "payment_failed"), id="B5-empty-schedule-ends"),
    ],
)
def test_B5_after_failed_charge(policy, failures, expected):
    assert after_failed_charge(END, failures, policy) == expected


@pytest.mark.parametrize("failures", [pytest.param(0, id="B5-zero"), pytest.param(-1, id="B5-negative")])
def test_B5_after_failed_charge_needs_a_failure(failures):
    with pytest.raises(ValueError):
        after_failed_charge(END, failures, DEFAULT)


@pytest.mark.parametrize(
    "status, cancel, now, due, action",
    [
        pytest.param("active", False, END - timedelta(seconds=1), False, "none", id="B2-before-end"),
        pytest.param("active", False, END, True, "renew", id="B2-renews-at-end"),
        pytest.param("active", False, END + days(2), True, "renew", id="B2-renews-late-scheduler"),
        pytest.param("active", True, END - timedelta(seconds=1), False, "none", id="C1-cancelled-before-end"),
        pytest.param("active", True, END, False, "end", id="C1-cancelled-ends-at-period-end"),
        pytest.param("past_due", False, END, False, "none", id="B5-past-due-handled-by-retries"),
        pytest.param("canceled", False, END, False, "none", id="C1-already-ended"),
        pytest.param("incomplete", False, END, False, "none", id="B1-incomplete-never-renews"),
    ],
)
def test_B2_C1_renewal_due_and_period_end_action(status, cancel, now, due, action):
    assert renewal_due(status, cancel, END, now) is due
    assert period_end_action(status, cancel, END, now) == action


def test_B2_naive_datetimes_refused():
    with pytest.raises(ValueError):
        renewal_due("active", False, datetime(2027, 1, 1), END)
    with pytest.raises(ValueError):
        period_end_action("active", False, END, datetime(2027, 1, 1))


@pytest.mark.parametrize("paid", [0, 1, 4999, 10**12])
def test_R1_cancellation_refunds_nothing(paid):
    assert cancellation_refund(paid) == 0


NOW = datetime(2027, 2, 10, tzinfo=UTC)
TRIAL_END = NOW + days(5)
PERIOD_END = NOW + days(18)


def facts(customer="active", trial=None, trial_ends=TRIAL_END, sub=None, period_end=PERIOD_END) -> AccessFacts:
    return AccessFacts(
        customer_status=customer,
        trial_status=trial,
        trial_ends_at=trial_ends if trial else None,
        trial_plan="pro" if trial else None,
        subscription_status=sub,
        subscription_period_end=period_end if sub else None,
        subscription_plan="enterprise" if sub else None,
    )


NONE = AccessDecision(False, None, None, None, "no_subscription")


@pytest.mark.parametrize(
    "given, expected",
    [
        pytest.param(facts(), NONE, id="no-trial-no-subscription"),
        pytest.param(facts(sub="active"), AccessDecision(True, "subscription", "enterprise", PERIOD_END,
                                                         "subscription_active"), id="B2-active-subscription"),
        pytest.param(facts(sub="past_due"), AccessDecision(True, "subscription", "enterprise", PERIOD_END,
                                                           "subscription_past_due"), id="B5-past-due-keeps-access"),
        pytest.param(facts(sub="active", period_end=NOW), NONE, id="C1-at-period-end-no-access"),
        pytest.param(facts(sub="canceled"), NONE, id="C1-ended-subscription"),
        pytest.param(facts(sub="incomplete"), NONE, id="B1-incomplete-grants-nothing"),
        pytest.param(facts(trial="active"), AccessDecision(True, "trial", "pro", TRIAL_END, "trial_active"),
                     id="T2-active-trial"),
        pytest.param(facts(trial="active", trial_ends=NOW), NONE, id="T3-trial-at-end"),
        pytest.param(facts(trial="expired"), NONE, id="T3-expired-trial"),
        pytest.param(facts(trial="forfeited"), NONE, id="T6-forfeited-trial"),
        pytest.param(facts(trial="active", sub="active"), AccessDecision(True, "subscription", "enterprise",
                                                                         PERIOD_END, "subscription_active"),
                     id="subscription-wins-over-trial"),
        pytest.param(facts(trial="active", sub="canceled"), AccessDecision(True, "trial", "pro", TRIAL_END,
                                                                          "trial_active"), id="trial-after-ended-sub"),
        pytest.param(facts("suspended", trial="active", sub="active"),
                     AccessDecision(False, None, None, None, "suspended"), id="R3-suspended"),
        pytest.param(facts("terminated", sub="active"), AccessDecision(False, None, None, None, "terminated"),
                     id="R3-terminated"),
        pytest.param(facts("erased", trial="active"), AccessDecision(False, None, None, None, "erased"),
                     id="D3-erased"),
    ],
)
def test_R3_C1_B5_T3_access(given, expected):
    assert access(given, NOW) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"customer_status": "banned"}, id="R3-unknown-customer-status"),
        pytest.param({"customer_status": "active", "subscription_status": "cancelled"}, id="C1-unknown-sub-status"),
        pytest.param({"customer_status": "active", "trial_status": "running"}, id="T3-unknown-trial-status"),
        pytest.param({"customer_status": "active", "trial_status": "active", "trial_ends_at": datetime(2027, 1, 1)},
                     id="T3-naive-trial-end"),
    ],
)
def test_R3_access_facts_validated(kwargs):
    with pytest.raises(ValueError):
        AccessFacts(**kwargs)


def test_R3_access_refuses_naive_now():
    with pytest.raises(ValueError):
        access(facts(), datetime(2027, 1, 1))
