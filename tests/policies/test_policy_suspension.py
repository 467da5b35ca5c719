"""R3 with B5: charges held while the customer is suspended, released by the lifting; retries counted from it."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import (
    FailureOutcome,
    PolicyDocument,
    after_failed_charge,
    charge_due_at_lifting,
    charge_held,
    retries_counted_from,
)

END = datetime(2027, 2, 28, 12, tzinfo=UTC)
LIFTED = datetime(2027, 3, 4, 9, tzinfo=UTC)
DEFAULT = PolicyDocument(version="d", effective_from=datetime(2026, 1, 1, tzinfo=UTC))


def days(n: float) -> timedelta:
    return timedelta(days=n)


@pytest.mark.parametrize(
    "customer_status, held",
    [
        ("active", False),
        ("suspended", True),
        ("terminated", True),
        ("erased", True),
    ],
)
def test_R3_B5_renewals_and_retries_are_charged_only_for_an_active_customer(customer_status, held):
    assert charge_held(customer_status) is held


def test_R3_charge_held_refuses_an_unknown_customer_status():
    with pytest.raises(ValueError):
        charge_held("paused")


@pytest.mark.parametrize(
    "status, cancel, period_end, next_retry_at, released",
    [
        ("active", False, END - days(1), None, True),  # the renewal fell due while suspended
        ("active", False, LIFTED, None, True),  # due at the very moment of the lifting
        ("active", False, LIFTED + days(1), None, False),  # not due yet: nothing was held
        ("active", True, END - days(1), None, False),  # C1: the period end ends it, no charge
        ("past_due", False, END - days(5), LIFTED - days(1), True),  # a retry fell due while suspended
        ("past_due", False, END - days(5), LIFTED + days(1), False),  # the next retry is still ahead
        ("past_due", False, END - days(5), None, False),
        ("incomplete", False, None, None, False),
        ("canceled", False, END - days(1), None, False),
    ],
)
def test_R3_B5_what_a_lifting_releases(status, cancel, period_end, next_retry_at, released):
    assert charge_due_at_lifting(status, cancel, period_end, next_retry_at, LIFTED) is released


@pytest.mark.parametrize(
    "released_at, base",
    [
        (None, END),  # no held charge: from the period end (B5)
        (LIFTED, LIFTED),  # a held charge: from the lifting (R3)
        (END - days(3), END),  # a lifting of an earlier period changes nothing
        (END, END),
    ],
)
def test_R3_B5_retries_are_counted_from_the_lifting_of_a_held_charge(released_at, base):
    assert retries_counted_from(END, released_at) == base


@pytest.mark.parametrize(
    "failures, expected",
    [
        (1, FailureOutcome("past_due", LIFTED + days(1), None)),
        (2, FailureOutcome("past_due", LIFTED + days(3), None)),
        (3, FailureOutcome("past_due", LIFTED + days(7), None)),
        (4, FailureOutcome("ended", None, "payment_failed")),
    ],
)
def test_R3_B5_a_held_renewal_failing_after_the_lifting_is_retried_1_3_7_days_after_it(failures, expected):
    assert after_failed_charge(END, failures, DEFAULT, LIFTED) == expected


@given(offset=st.floats(min_value=-400, max_value=400), failures=st.integers(min_value=1, max_value=3))
def test_R3_B5_retries_never_come_before_the_period_end_or_the_lifting(offset, failures):
    released = END + days(offset)
    outcome = after_failed_charge(END, failures, DEFAULT, released)
    assert outcome.next_retry_at > max(END, released)
    assert outcome == after_failed_charge(max(END, released), failures, DEFAULT)  # the later of the two


def test_R3_naive_times_are_refused():
    with pytest.raises(ValueError):
        retries_counted_from(END, datetime(2027, 3, 4))
    with pytest.raises(ValueError):
        charge_due_at_lifting("active", False, END, None, datetime(2027, 3, 4))
