"""B2/B5/C1/R1/R3/T3: renewal, failed charges, cancellation and access."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import (
    AccessDecision,
    AccessFacts,
    FailureOutcome,
    PolicyDocument,
    SubscriptionFacts,
    access,
    after_failed_charge,
    cancellation_ends_period,
    cancellation_refund,
    failure_with_cancellation,
    period_end_action,
    renewal_due,
    subscription_at,
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


@pytest.mark.parametrize(
    "canceled_at, now, due, action",
    [
        pytest.param(END - days(3), END, False, "end", id="C1-asked-before-the-end-ends-that-period"),
        pytest.param(END - timedelta(microseconds=1), END, False, "end", id="C1-asked-just-before-the-end"),
        pytest.param(END, END, True, "renew", id="B2-asked-at-the-end-instant-renewal-still-made"),
        pytest.param(
            END + timedelta(hours=12),
            END + timedelta(hours=13),
            True,
            "renew",
            id="B2-asked-in-the-gap-renewal-still-made",
        ),
        pytest.param(None, END, False, "end", id="C1-no-date-ends-that-period"),
    ],
)
def test_B2_C1_a_cancellation_asked_after_the_period_end_does_not_skip_the_due_renewal(canceled_at, now, due, action):
    assert renewal_due("active", True, END, now, canceled_at) is due
    assert period_end_action("active", True, END, now, canceled_at) == action
    assert cancellation_ends_period(True, canceled_at, END) is (action == "end")
    assert cancellation_ends_period(False, canceled_at, END) is False


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
        pytest.param(
            facts(sub="active"),
            AccessDecision(True, "subscription", "enterprise", PERIOD_END, "subscription_active"),
            id="B2-active-subscription",
        ),
        pytest.param(
            facts(sub="past_due"),
            AccessDecision(True, "subscription", "enterprise", PERIOD_END, "subscription_past_due"),
            id="B5-past-due-keeps-access",
        ),
        pytest.param(facts(sub="active", period_end=NOW), NONE, id="C1-at-period-end-no-access"),
        pytest.param(facts(sub="canceled"), NONE, id="C1-ended-subscription"),
        pytest.param(facts(sub="incomplete"), NONE, id="B1-incomplete-grants-nothing"),
        pytest.param(
            facts(trial="active"), AccessDecision(True, "trial", "pro", TRIAL_END, "trial_active"), id="T2-active-trial"
        ),
        pytest.param(facts(trial="active", trial_ends=NOW), NONE, id="T3-trial-at-end"),
        pytest.param(facts(trial="expired"), NONE, id="T3-expired-trial"),
        pytest.param(facts(trial="forfeited"), NONE, id="T6-forfeited-trial"),
        pytest.param(
            facts(trial="active", sub="active"),
            AccessDecision(True, "subscription", "enterprise", PERIOD_END, "subscription_active"),
            id="subscription-wins-over-trial",
        ),
        pytest.param(
            facts(trial="active", sub="canceled"),
            AccessDecision(True, "trial", "pro", TRIAL_END, "trial_active"),
            id="trial-after-ended-sub",
        ),
        pytest.param(
            facts("suspended", trial="active", sub="active"),
            AccessDecision(False, None, None, None, "suspended"),
            id="R3-suspended",
        ),
        pytest.param(
            facts("terminated", sub="active"), AccessDecision(False, None, None, None, "terminated"), id="R3-terminated"
        ),
        pytest.param(
            facts("erased", trial="active"), AccessDecision(False, None, None, None, "erased"), id="D3-erased"
        ),
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
        pytest.param(
            {"customer_status": "active", "trial_status": "active", "trial_ends_at": datetime(2027, 1, 1)},
            id="T3-naive-trial-end",
        ),
    ],
)
def test_R3_access_facts_validated(kwargs):
    with pytest.raises(ValueError):
        AccessFacts(**kwargs)


def test_R3_access_refuses_naive_now():
    with pytest.raises(ValueError):
        access(facts(), datetime(2027, 1, 1))


# ---------------------------------------------------------------------------------------------------- B2/C1: the gap

ANCHOR = datetime(2030, 1, 31, 12, tzinfo=UTC)
FEB_END = datetime(2030, 2, 28, 12, tzinfo=UTC)  # B4: 31 Jan + 1 month
MAR_END = datetime(2030, 3, 31, 12, tzinfo=UTC)
APR_END = datetime(2030, 4, 30, 12, tzinfo=UTC)
STORED = SubscriptionFacts(
    status="active", anchor_at=ANCHOR, interval="month", period_index=0, period_start=ANCHOR, period_end=FEB_END
)


def cancelled(at: datetime | None) -> SubscriptionFacts:
    return replace(STORED, cancel_at_period_end=True, canceled_at=at)


def running(index: int, start: datetime, end: datetime, facts: SubscriptionFacts = STORED) -> SubscriptionFacts:
    return replace(facts, period_index=index, period_start=start, period_end=end)


def ended(index: int, start: datetime, end: datetime, facts: SubscriptionFacts) -> SubscriptionFacts:
    return replace(
        facts,
        status="canceled",
        period_index=index,
        period_start=start,
        period_end=end,
        ended_at=end,
        ended_reason="canceled",
    )


H = timedelta(hours=1)


@pytest.mark.parametrize(
    "facts, now, expected",
    [
        pytest.param(STORED, FEB_END - H, STORED, id="B2-before-the-end-as-stored"),
        pytest.param(STORED, FEB_END, running(1, FEB_END, MAR_END), id="B2-at-the-end-instant-next-period"),
        pytest.param(STORED, FEB_END + 12 * H, running(1, FEB_END, MAR_END), id="B2-in-the-gap-next-period"),
        pytest.param(STORED, MAR_END + H, running(2, MAR_END, APR_END), id="B2-B4-two-periods-behind-anchored"),
        pytest.param(
            cancelled(FEB_END - days(5)), FEB_END - H, cancelled(FEB_END - days(5)), id="C1-scheduled-before-the-end"
        ),
        pytest.param(
            cancelled(FEB_END - days(5)),
            FEB_END,
            ended(0, ANCHOR, FEB_END, cancelled(FEB_END - days(5))),
            id="C1-ends-at-the-period-end-before-the-job",
        ),
        pytest.param(
            cancelled(FEB_END + 12 * H),
            FEB_END + 13 * H,
            running(1, FEB_END, MAR_END, cancelled(FEB_END + 12 * H)),
            id="B2-C1-asked-in-the-gap-renewed",
        ),
        pytest.param(
            cancelled(FEB_END + 12 * H),
            MAR_END,
            ended(1, FEB_END, MAR_END, cancelled(FEB_END + 12 * H)),
            id="B2-C1-gap-ends-the-renewed-period",
        ),
        pytest.param(cancelled(None), FEB_END, ended(0, ANCHOR, FEB_END, cancelled(None)), id="C1-no-date"),
        pytest.param(
            replace(STORED, status="past_due"),
            FEB_END + days(2),
            replace(STORED, status="past_due"),
            id="B5-past-due-as-stored",
        ),
        pytest.param(
            replace(STORED, status="canceled"), FEB_END + H, replace(STORED, status="canceled"), id="C1-ended-as-stored"
        ),
    ],
)
def test_B2_C1_subscription_at(facts, now, expected):
    assert subscription_at(facts, now) == expected


def test_B2_subscription_at_refuses_naive_times():
    with pytest.raises(ValueError):
        subscription_at(STORED, datetime(2030, 3, 1))
    with pytest.raises(ValueError):
        replace(STORED, canceled_at=datetime(2030, 3, 1))


@settings(max_examples=200, deadline=None, database=None)
@given(
    periods_late=st.integers(0, 40),
    offset=st.integers(0, 27 * 86_400),
    asked_after=st.one_of(st.none(), st.integers(-20 * 86_400, 40 * 86_400)),
)
def test_B2_C1_the_state_is_the_one_the_jobs_would_record(periods_late, offset, asked_after):
    """B2/C1: whatever the time, the state read in the gap is the stored one moved on period by period, on the
    anchor (B4), and a cancellation ends exactly the period it was asked in."""
    now = FEB_END + timedelta(days=28 * periods_late, seconds=offset)
    asked = None if asked_after is None else min(now, FEB_END + timedelta(seconds=asked_after))  # never ahead
    facts = STORED if asked is None else cancelled(asked)
    state = subscription_at(facts, now)
    if state.status == "active":
        assert state.period_start <= now < state.period_end
        assert asked is None or asked < state.period_end
    else:
        assert state.status == "canceled" and asked is not None
        assert state.period_start <= asked < state.period_end == state.ended_at <= now
    assert (state.period_start, state.period_end) == (
        (ANCHOR, FEB_END) if state.period_index == 0 else period_of(state.period_index)
    )


def period_of(index: int) -> tuple[datetime, datetime]:
    from policies import period_bounds

    return period_bounds(ANCHOR, "month", index)


ACTIVE_UNTIL_MAR = AccessDecision(True, "subscription", "enterprise", MAR_END, "subscription_active")
NO_ACCESS = AccessDecision(False, None, None, None, "no_subscription")
GAP_TRIAL_END = FEB_END + days(10)


def gap_facts(
    status: str = "active", subscription: SubscriptionFacts | None = STORED, grace: int = 0, trial: str | None = None
) -> AccessFacts:
    return AccessFacts(
        customer_status="active",
        trial_status=trial,
        trial_ends_at=GAP_TRIAL_END if trial else None,
        trial_plan="pro" if trial else None,
        subscription_status=status,
        subscription_period_end=FEB_END,
        subscription_plan="enterprise",
        subscription=subscription if status == "active" else None,
        past_due_grace_days=grace,
    )


@pytest.mark.parametrize(
    "given_facts, now, expected",
    [
        pytest.param(
            gap_facts(),
            FEB_END - H,
            AccessDecision(True, "subscription", "enterprise", FEB_END, "subscription_active"),
            id="B2-before-the-end",
        ),
        pytest.param(gap_facts(), FEB_END, ACTIVE_UNTIL_MAR, id="B2-at-the-end-instant-renewal-due"),
        pytest.param(gap_facts(), FEB_END + timedelta(seconds=1), ACTIVE_UNTIL_MAR, id="B2-gap-before-the-job"),
        pytest.param(
            gap_facts(subscription=cancelled(FEB_END - days(3))), FEB_END, NO_ACCESS, id="C1-cancelled-for-that-end"
        ),
        pytest.param(
            gap_facts(subscription=cancelled(FEB_END + 12 * H)),
            FEB_END + 13 * H,
            ACTIVE_UNTIL_MAR,
            id="B2-C1-cancelled-in-the-gap-until-the-renewed-end",
        ),
        pytest.param(
            gap_facts(subscription=cancelled(FEB_END + 12 * H)),
            MAR_END,
            NO_ACCESS,
            id="B2-C1-cancelled-in-the-gap-ends-with-the-renewed-period",
        ),
        pytest.param(
            gap_facts("past_due", grace=7),
            FEB_END + days(6),
            AccessDecision(True, "subscription", "enterprise", FEB_END + days(7), "subscription_past_due"),
            id="B5-past-due-grace",
        ),
        pytest.param(gap_facts("past_due", grace=7), FEB_END + days(7), NO_ACCESS, id="B5-grace-over"),
        pytest.param(
            gap_facts(subscription=cancelled(FEB_END - days(3)), trial="active"),
            FEB_END,
            AccessDecision(True, "trial", "pro", GAP_TRIAL_END, "trial_active"),
            id="T2-trial-after-the-end",
        ),
    ],
)
def test_B2_C1_B5_access_across_the_period_end(given_facts, now, expected):
    assert access(given_facts, now) == expected


def test_B5_grace_days_validated():
    with pytest.raises(ValueError):
        gap_facts(grace=-1)


_ENDED_CANCELED = FailureOutcome("ended", None, "canceled")


@pytest.mark.parametrize(
    ("scheduled", "canceled_at", "now", "expected"),
    [
        (False, None, END + days(1), None),  # B5 applies
        (True, END - days(3), END + days(1), (_ENDED_CANCELED, END)),  # asked before the period end: ends with it
        (True, None, END + days(1), (_ENDED_CANCELED, END)),
        (True, END, END + days(1), (_ENDED_CANCELED, END + days(1))),  # B2: at the period end, ends at the failure
        (True, END + timedelta(hours=12), END + timedelta(hours=13), (_ENDED_CANCELED, END + timedelta(hours=13))),
        (True, END + timedelta(hours=12), END + timedelta(hours=11), (_ENDED_CANCELED, END + timedelta(hours=12))),
    ],
)
def test_C1_B2_failure_with_cancellation_never_ends_before_the_cancellation(scheduled, canceled_at, now, expected):
    """C1/B2/B5 (review finding 4): a failed charge with a cancellation scheduled ends the subscription, with the
    period it was asked in if asked before its end, else at the failure, never before canceled_at."""
    assert failure_with_cancellation(scheduled, canceled_at, END, now) == expected


@settings(max_examples=200, deadline=None)
@given(st.booleans(), st.one_of(st.none(), st.integers(-(10**6), 10**6)), st.integers(-(10**6), 10**6))
def test_C1_failure_with_cancellation_ended_at_is_never_before_canceled_at(scheduled, asked, failed):
    canceled_at = None if asked is None else END + timedelta(seconds=asked)
    result = failure_with_cancellation(scheduled, canceled_at, END, END + timedelta(seconds=failed))
    assert (result is None) == (not scheduled)
    if result is not None and canceled_at is not None:
        assert result[1] >= canceled_at
