"""T1/T3/T4/T5/T6/T7: trial length, notice, eligibility, expiry and forfeit."""

from datetime import UTC, datetime, timedelta

import pytest

from policies import (
    Decision,
    PersonHistory,
    PolicyDocument,
    TrialTerms,
    forfeit_at,
    normalise_email,
    trial_eligibility,
    trial_expired,
    trial_notice_days_left,
    trial_notice_due,
    trial_terms,
)

START = datetime(2027, 3, 10, 8, 15, tzinfo=UTC)


def policy(trial_days: int = 30, notice: int = 7) -> PolicyDocument:
    return PolicyDocument(
        version=f"v{trial_days}-{notice}",
        effective_from=datetime(2026, 1, 1, tzinfo=UTC),
        trial_days=trial_days,
        notice_days_before_trial_end=notice,
    )


@pytest.mark.parametrize(
    "raw, expected",
    [
        pytest.param("alice@example.com", "alice@example.com", id="T5-unchanged"),
        pytest.param("  Alice@Example.COM \n", "alice@example.com", id="T5-spaces-and-case"),
        pytest.param("\tBOB@EXAMPLE.ORG", "bob@example.org", id="T5-tab-and-upper"),
        pytest.param("Straße@Example.de", "strasse@example.de", id="T5-casefold"),
    ],
)
def test_T5_normalise_email(raw, expected):
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    "trial_days, notice, ends_after, notice_after",
    [
        pytest.param(30, 7, timedelta(days=30), timedelta(days=23), id="T1-T4-defaults"),
        pytest.param(7, 7, timedelta(days=7), timedelta(0), id="T4-trial-equal-to-notice-window"),
        pytest.param(5, 7, timedelta(days=5), timedelta(0), id="T4-trial-shorter-than-notice-window"),
        pytest.param(14, 0, timedelta(days=14), timedelta(days=14), id="T4-zero-notice-at-end"),
    ],
)
def test_T1_T4_trial_terms(trial_days, notice, ends_after, notice_after):
    document = policy(trial_days, notice)
    assert trial_terms(START, document) == TrialTerms(
        started_at=START, ends_at=START + ends_after, notice_at=START + notice_after, policy_version=document.version
    )


def test_T1_trial_terms_refuses_naive_start():
    with pytest.raises(ValueError):
        trial_terms(datetime(2027, 1, 1), policy())


NEITHER = PersonHistory(had_trial=False, had_paid_subscription=False)
TRIALLED = PersonHistory(had_trial=True, had_paid_subscription=False)
PAID = PersonHistory(had_trial=False, had_paid_subscription=True)
BOTH = PersonHistory(had_trial=True, had_paid_subscription=True)


@pytest.mark.parametrize(
    "history, offers, allowed, code, rule",
    [
        pytest.param(NEITHER, True, True, None, "T5", id="T5-first-trial-allowed"),
        pytest.param(TRIALLED, True, False, "trial_not_eligible", "T5", id="T5-had-trial"),
        pytest.param(PAID, True, False, "trial_not_eligible", "T5", id="T5-had-paid-subscription"),
        pytest.param(BOTH, True, False, "trial_not_eligible", "T5", id="T5-had-both"),
        pytest.param(NEITHER, False, False, "trial_not_available", "T2", id="plan-without-trial"),
        pytest.param(BOTH, False, False, "trial_not_available", "T2", id="availability-checked-first"),
    ],
)
def test_T5_trial_eligibility(history, offers, allowed, code, rule):
    decision = trial_eligibility(history, plan_offers_trial=offers)
    assert (decision.allowed, decision.code, decision.rule) == (allowed, code, rule)
    assert decision.reason


def test_T5_decision_is_consistent():
    with pytest.raises(ValueError):
        Decision(allowed=True, code="x", rule="T5", reason="r")
    with pytest.raises(ValueError):
        Decision(allowed=False, code=None, rule="T5", reason="r")


NOTICE_AT = START + timedelta(days=23)


@pytest.mark.parametrize(
    "now, already_sent, due",
    [
        pytest.param(NOTICE_AT - timedelta(seconds=1), False, False, id="T4-before-notice"),
        pytest.param(NOTICE_AT, False, True, id="T4-exactly-at-notice"),
        pytest.param(NOTICE_AT + timedelta(days=3), False, True, id="T4-late-scheduler-still-sends"),
        pytest.param(NOTICE_AT, True, False, id="T4-never-twice"),
        pytest.param(NOTICE_AT + timedelta(days=3), True, False, id="T4-never-twice-later"),
    ],
)
def test_T4_trial_notice_due(now, already_sent, due):
    assert trial_notice_due(NOTICE_AT, now, already_sent) is due


ENDS_AT = START + timedelta(days=30)
SHORT_ENDS_AT = START + timedelta(days=5)  # a 5-day trial under a 7-day window: its notice is due at the start


@pytest.mark.parametrize(
    "notice_at, ends_at, now, already_sent, days_left",
    [
        pytest.param(NOTICE_AT, ENDS_AT, NOTICE_AT - timedelta(seconds=1), False, None, id="T4-not-due-yet"),
        pytest.param(NOTICE_AT, ENDS_AT, NOTICE_AT, False, 7, id="T4-on-time-7-days"),
        pytest.param(NOTICE_AT, ENDS_AT, NOTICE_AT + timedelta(minutes=1), False, 7, id="T4-a-minute-late-still-7"),
        pytest.param(NOTICE_AT, ENDS_AT, NOTICE_AT + timedelta(days=1), False, 6, id="T4-a-day-late-6-days"),
        pytest.param(NOTICE_AT, ENDS_AT, ENDS_AT - timedelta(days=2), False, 2, id="T4-five-days-late-2-days"),
        pytest.param(NOTICE_AT, ENDS_AT, ENDS_AT - timedelta(days=1, hours=12), False, 2, id="T4-part-day-rounds-up"),
        pytest.param(NOTICE_AT, ENDS_AT, ENDS_AT - timedelta(seconds=1), False, 1, id="T4-last-second-1-day"),
        pytest.param(NOTICE_AT, ENDS_AT, ENDS_AT, False, None, id="T4-trial-ended-not-sent"),
        pytest.param(NOTICE_AT, ENDS_AT, ENDS_AT + timedelta(days=20), False, None, id="T4-weeks-late-not-sent"),
        pytest.param(NOTICE_AT, ENDS_AT, NOTICE_AT, True, None, id="T4-never-twice"),
        pytest.param(START, SHORT_ENDS_AT, START, False, 5, id="T4-short-trial-notice-at-start-5-days"),
        pytest.param(START, SHORT_ENDS_AT, START + timedelta(days=4), False, 1, id="T4-short-trial-late-1-day"),
        pytest.param(START, SHORT_ENDS_AT, SHORT_ENDS_AT, False, None, id="T4-short-trial-ended-not-sent"),
        pytest.param(ENDS_AT, ENDS_AT, ENDS_AT, False, None, id="T4-zero-day-window-never-sent"),
    ],
)
def test_T4_trial_notice_days_left(notice_at, ends_at, now, already_sent, days_left):
    """T4: the notice goes out when due and the trial has not ended, stating the whole days left (rounded up);
    one that could only go out once the trial had ended is not sent (None)."""
    assert trial_notice_days_left(notice_at, ends_at, now, already_sent) == days_left


def test_T4_trial_notice_days_left_refuses_naive_times():
    with pytest.raises(ValueError):
        trial_notice_days_left(NOTICE_AT, datetime(2027, 4, 9), NOTICE_AT, False)


@pytest.mark.parametrize(
    "now, expired",
    [
        pytest.param(ENDS_AT - timedelta(microseconds=1), False, id="T3-just-before-end"),
        pytest.param(ENDS_AT, True, id="T3-at-end"),
        pytest.param(ENDS_AT + timedelta(days=100), True, id="T3-long-after"),
    ],
)
def test_T3_trial_expired(now, expired):
    assert trial_expired(ENDS_AT, now) is expired


@pytest.mark.parametrize(
    "purchase_at, expected",
    [
        pytest.param(START + timedelta(days=2), START + timedelta(days=2), id="T6-purchase-during-trial"),
        pytest.param(START, START, id="T6-purchase-at-start"),
        pytest.param(ENDS_AT, None, id="T6-purchase-at-end-nothing-to-forfeit"),
        pytest.param(ENDS_AT + timedelta(days=1), None, id="T6-purchase-after-trial"),
    ],
)
def test_T6_forfeit_at(purchase_at, expected):
    assert forfeit_at(ENDS_AT, purchase_at) == expected


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: trial_notice_due(datetime(2027, 1, 1), START, False), id="T4-naive-notice"),
        pytest.param(lambda: trial_notice_due(START, datetime(2027, 1, 1), False), id="T4-naive-now"),
        pytest.param(lambda: trial_expired(START, datetime(2027, 1, 1)), id="T3-naive-now"),
        pytest.param(lambda: forfeit_at(START, datetime(2027, 1, 1)), id="T6-naive-purchase"),
    ],
)
def test_T3_T4_T6_naive_datetimes_refused(call):
    with pytest.raises(ValueError):
        call()
