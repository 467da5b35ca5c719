"""B1/B2/B4/B5/C1/R3: what a charge's outcome does to its payment and its subscription (policies/settlement.py)."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import (
    EndedReason,
    FailureTransition,
    PaidPeriod,
    PolicyDocument,
    Settlement,
    SubscriptionStatus,
    after_failed_charge,
    charge_in_flight,
    failure_code,
    paid_period,
    period_bounds,
    purchase_failure_ends,
    renewal_failure,
    renews,
    settlement,
)

END = datetime(2027, 2, 28, 12, tzinfo=UTC)
ANCHOR = datetime(2026, 11, 28, 12, tzinfo=UTC)
DEFAULT = PolicyDocument(version="d", effective_from=datetime(2026, 1, 1, tzinfo=UTC))
NO_RETRIES = PolicyDocument(version="n", effective_from=datetime(2026, 1, 1, tzinfo=UTC), retry_schedule_days=())
PAYMENT_STATUSES = ["pending", "succeeded", "failed"]
PURPOSES = ["purchase", "renewal", "retry"]
RESULTS = ["succeeded", "failed", "requires_action"]
SUB_STATUSES = [s.value for s in SubscriptionStatus]
instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC))


def days(n: int) -> timedelta:
    return timedelta(days=n)


# settlement ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payment_status, purpose, result, expected",
    [
        pytest.param("pending", "purchase", "succeeded", Settlement.SUCCEED, id="B1-purchase-paid"),
        pytest.param("pending", "renewal", "succeeded", Settlement.SUCCEED, id="B2-renewal-paid"),
        pytest.param("pending", "retry", "succeeded", Settlement.SUCCEED, id="B5-retry-paid"),
        pytest.param("pending", "purchase", "requires_action", Settlement.AWAIT_CUSTOMER, id="B1-3ds-waits"),
        pytest.param("pending", "renewal", "requires_action", Settlement.FAIL, id="B5-off-session-action-fails"),
        pytest.param("pending", "retry", "requires_action", Settlement.FAIL, id="B5-retry-action-fails"),
        pytest.param("pending", "purchase", "failed", Settlement.FAIL, id="B1-purchase-declined"),
        pytest.param("pending", "renewal", "failed", Settlement.FAIL, id="B5-renewal-declined"),
        pytest.param("failed", "purchase", "succeeded", Settlement.LATE_SUCCESS, id="B1-late-success"),
        pytest.param("failed", "renewal", "succeeded", Settlement.LATE_SUCCESS, id="R2-late-renewal-success"),
        pytest.param("failed", "purchase", "failed", Settlement.UNCHANGED, id="B1-failed-again-unchanged"),
        pytest.param("succeeded", "renewal", "succeeded", Settlement.UNCHANGED, id="B2-repeat-unchanged"),
        pytest.param("succeeded", "purchase", "failed", Settlement.UNCHANGED, id="B1-forward-only"),
    ],
)
def test_B1_B5_settlement(payment_status, purpose, result, expected):
    assert settlement(payment_status, purpose, result) is expected


@given(st.sampled_from(PAYMENT_STATUSES), st.sampled_from(PURPOSES), st.sampled_from(RESULTS))
def test_B1_state_only_moves_forward(payment_status, purpose, result):
    """A payment settled already is never failed again nor made pending again: only a late success of a failed
    one is recorded, and a succeeded payment changes no more."""
    decision = settlement(payment_status, purpose, result)
    if payment_status == "succeeded":
        assert decision is Settlement.UNCHANGED
    if payment_status != "pending":
        assert decision in (Settlement.UNCHANGED, Settlement.LATE_SUCCESS)
    if decision is Settlement.AWAIT_CUSTOMER:
        assert (payment_status, purpose, result) == ("pending", "purchase", "requires_action")


@pytest.mark.parametrize(
    "result, decline, expected",
    [
        pytest.param("failed", "card_declined", "card_declined", id="B5-decline-code-kept"),
        pytest.param("failed", None, "failed", id="B5-no-code"),
        pytest.param("requires_action", None, "authentication_required", id="B5-off-session-action"),
        pytest.param("requires_action", "insufficient_funds", "insufficient_funds", id="B5-code-wins"),
    ],
)
def test_B5_failure_code(result, decline, expected):
    assert failure_code(result, decline) == expected


# renews ----------------------------------------------------------------------------------------------------------

CHARGED = END - timedelta(minutes=1)


@pytest.mark.parametrize(
    "status, index, cancel, canceled_at, paid_index, expected",
    [
        pytest.param("active", 2, False, None, 3, True, id="B2-next-period-renews"),
        pytest.param("past_due", 2, False, None, 3, True, id="B5-retry-renews"),
        pytest.param("active", 3, False, None, 3, False, id="B2-period-paid-already"),
        pytest.param("active", 1, False, None, 3, False, id="B2-not-the-next-period"),
        pytest.param("canceled", 2, False, None, 3, False, id="C1-ended-renews-nothing"),
        pytest.param("incomplete", 0, False, None, 1, False, id="B1-incomplete-renews-nothing"),
        pytest.param(
            "active", 2, True, CHARGED + days(0) + timedelta(seconds=1), 3, False, id="C1-cancel-after-charge"
        ),
        pytest.param("active", 2, True, CHARGED - timedelta(seconds=1), 3, True, id="C1-cancel-before-charge"),
        pytest.param("active", 2, True, END + timedelta(seconds=1), 3, True, id="B2-cancel-in-renewed-period"),
        pytest.param("active", 2, True, CHARGED, 3, False, id="C1-cancel-at-charge-instant"),
    ],
)
def test_B2_B5_C1_renews(status, index, cancel, canceled_at, paid_index, expected):
    assert renews(status, index, cancel, canceled_at, END, paid_index, CHARGED) is expected


@given(
    st.sampled_from(SUB_STATUSES),
    st.integers(0, 50),
    st.booleans(),
    st.none() | instants,
    instants,
    st.integers(0, 52),
    instants,
)
def test_B2_renews_only_the_next_period_of_a_running_subscription(
    status, index, cancel, canceled_at, period_end, paid_index, charged_at
):
    if renews(status, index, cancel, canceled_at, period_end, paid_index, charged_at):
        assert status in ("active", "past_due")
        assert paid_index == index + 1
        # C1: no cancellation confirmed for this period end after the charge was made
        assert not (cancel and canceled_at is not None and charged_at <= canceled_at < period_end)


# paid_period -----------------------------------------------------------------------------------------------------


def test_B1_B4_a_purchase_is_anchored_at_its_payment():
    now = datetime(2027, 1, 31, 9, tzinfo=UTC)
    assert paid_period("purchase", now, "month", None, 0) == PaidPeriod(
        now, 0, now, datetime(2027, 2, 28, 9, tzinfo=UTC)
    )


def test_B2_B4_a_renewal_counts_from_the_anchor():
    now = datetime(2027, 5, 2, tzinfo=UTC)  # a late retry does not move the anchor
    paid = paid_period("retry", now, "month", ANCHOR, 3)
    assert (paid.anchor, paid.index) == (ANCHOR, 3)
    assert (paid.start, paid.end) == period_bounds(ANCHOR, "month", 3)


def test_B2_a_renewal_needs_an_anchor():
    with pytest.raises(ValueError):
        paid_period("renewal", END, "month", None, 1)


@given(st.sampled_from(PURPOSES), instants, st.sampled_from(["month", "year"]), instants, st.integers(0, 40))
def test_B4_the_paid_period_is_contiguous_with_the_previous_one(purpose, now, interval, anchor, index):
    paid = paid_period(purpose, now, interval, anchor, index)
    assert paid.start < paid.end
    if purpose == "purchase":
        assert (paid.anchor, paid.index, paid.start) == (now, 0, now)
    elif index > 0:
        assert period_bounds(anchor, interval, index - 1)[1] == paid.start


# B1: a failed purchase -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, expected",
    [
        pytest.param("incomplete", True, id="B1-incomplete-ends"),
        pytest.param("active", False, id="B1-started-meanwhile-kept"),
        pytest.param("canceled", False, id="B1-ended-already"),
        pytest.param("past_due", False, id="B1-not-waiting"),
    ],
)
def test_B1_purchase_failure_ends(status, expected):
    assert purchase_failure_ends(status) is expected


# B5/C1: a failed renewal or retry --------------------------------------------------------------------------------


def fail(status="active", attempts=0, cancel=False, canceled_at=None, released=None, policy=DEFAULT, now=END):
    return renewal_failure(status, attempts, END, released, cancel, canceled_at, policy, now)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        pytest.param(
            {},
            FailureTransition(SubscriptionStatus.PAST_DUE, "past_due", 1, END + days(1), None, None),
            id="B5-first-failure",
        ),
        pytest.param(
            {"status": "past_due", "attempts": 2},
            FailureTransition(SubscriptionStatus.PAST_DUE, "past_due", 3, END + days(7), None, None),
            id="B5-second-retry",
        ),
        pytest.param(
            {"status": "past_due", "attempts": 3, "now": END + days(7)},
            FailureTransition(SubscriptionStatus.CANCELED, "ended", 4, None, END + days(7), EndedReason.PAYMENT_FAILED),
            id="B5-retries-spent",
        ),
        pytest.param(
            {"policy": NO_RETRIES},
            FailureTransition(SubscriptionStatus.CANCELED, "ended", 1, None, END, EndedReason.PAYMENT_FAILED),
            id="B5-no-retries",
        ),
        pytest.param(
            {"released": END + days(2)},
            FailureTransition(SubscriptionStatus.PAST_DUE, "past_due", 1, END + days(3), None, None),
            id="R3-retries-from-lifting",
        ),
        pytest.param(
            {"cancel": True, "canceled_at": END - days(3), "now": END + days(1)},
            FailureTransition(SubscriptionStatus.CANCELED, "ended", 1, None, END, EndedReason.CANCELED),
            id="C1-cancel-before-end-ends-with-period",
        ),
        pytest.param(
            {"cancel": True, "canceled_at": END + days(1), "now": END + days(2)},
            FailureTransition(SubscriptionStatus.CANCELED, "ended", 1, None, END + days(2), EndedReason.CANCELED),
            id="B2-cancel-after-end-ends-at-failure",
        ),
    ],
)
def test_B5_C1_renewal_failure(kwargs, expected):
    assert fail(**kwargs) == expected


@pytest.mark.parametrize("status", ["canceled", "incomplete"])
def test_B5_a_failure_of_an_ended_subscription_changes_nothing(status):
    assert fail(status=status) is None


@given(st.sampled_from(["active", "past_due"]), st.integers(0, 8), st.booleans(), st.none() | instants, instants)
def test_B5_a_failure_agrees_with_after_failed_charge(status, attempts, cancel, canceled_at, now):
    now = max(now, END)
    transition = fail(status=status, attempts=attempts, cancel=cancel, canceled_at=canceled_at, now=now)
    assert transition is not None
    assert transition.failed_attempts == attempts + 1
    if transition.status == SubscriptionStatus.PAST_DUE:
        assert not cancel  # C1: no retry with a cancellation scheduled
        assert transition == FailureTransition(
            SubscriptionStatus.PAST_DUE,
            "past_due",
            attempts + 1,
            after_failed_charge(END, attempts + 1, DEFAULT).next_retry_at,
            None,
            None,
        )
    else:
        assert transition.next_retry_at is None
        assert transition.ended_at is not None
        assert transition.ended_reason in (EndedReason.CANCELED, EndedReason.PAYMENT_FAILED)
        assert transition.ended_reason == (EndedReason.CANCELED if cancel else EndedReason.PAYMENT_FAILED)


# C1: the in-flight-charge refusal --------------------------------------------------------------------------------

WALL = datetime(2027, 3, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    "claimed_until, expected",
    [
        pytest.param(None, None, id="C1-no-charge"),
        pytest.param(WALL, None, id="C1-lease-ends-now"),
        pytest.param(WALL - timedelta(seconds=1), None, id="C1-lease-ran-out"),
        pytest.param(WALL + timedelta(seconds=15), 15, id="C1-charge-in-flight"),
        pytest.param(WALL + timedelta(seconds=14, microseconds=1), 15, id="C1-rounded-up"),
        pytest.param(WALL + timedelta(microseconds=1), 1, id="C1-at-least-a-second"),
    ],
)
def test_C1_charge_in_flight(claimed_until, expected):
    assert charge_in_flight(claimed_until, WALL) == expected


@given(st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=2)))
def test_C1_the_wait_covers_the_lease(ahead):
    wait = charge_in_flight(WALL + ahead, WALL)
    assert wait is not None
    assert timedelta(seconds=wait - 1) < ahead <= timedelta(seconds=wait)
