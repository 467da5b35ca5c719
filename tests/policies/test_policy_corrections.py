"""B1/R2: what a charge that succeeded buys; a purchase that no longer waits for its payment bought nothing and is
refunded in full, automatically (B1); a renewal that renews nothing is booked for ops (R2)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import B1_CORRECTION_REASON, late_success


@pytest.mark.parametrize(
    "purpose, status, renews, amount, refunded, action, refund, rule",
    [
        pytest.param("purchase", "incomplete", False, 2000, 0, "apply", 0, "B1", id="B1-awaited-purchase-starts"),
        pytest.param("purchase", "canceled", False, 2000, 0, "refund", 2000, "B1", id="B1-failed-purchase-refunded"),
        pytest.param(
            "purchase", "canceled", True, 2000, 0, "refund", 2000, "B1", id="B1-renews-flag-ignored-for-purchases"
        ),
        pytest.param(
            "purchase",
            "active",
            False,
            2000,
            0,
            "refund",
            2000,
            "B1",
            id="B1-purchase-of-a-running-subscription-buys-nothing",
        ),
        pytest.param("purchase", "past_due", False, 2000, 0, "refund", 2000, "B1", id="B1-purchase-past-due"),
        pytest.param("purchase", "canceled", False, 2000, 500, "refund", 1500, "B1", id="B1-refunds-what-is-left"),
        pytest.param("purchase", "canceled", False, 2000, 2000, "nothing", 0, "B1", id="B1-refunded-already"),
        pytest.param("purchase", "canceled", False, 0, 0, "nothing", 0, "B1", id="B1-free-charge-nothing-to-refund"),
        pytest.param("renewal", "active", True, 2000, 0, "apply", 0, "B1", id="B2-renewal-renews"),
        pytest.param("retry", "past_due", True, 2000, 0, "apply", 0, "B1", id="B5-retry-renews"),
        pytest.param("renewal", "canceled", False, 2000, 0, "book", 0, "R2", id="R2-renewal-after-end-booked"),
        pytest.param("retry", "active", False, 2000, 0, "book", 0, "R2", id="R2-retry-for-a-paid-period-booked"),
    ],
)
def test_B1_late_success(purpose, status, renews, amount, refunded, action, refund, rule):
    outcome = late_success(purpose, status, renews, amount, refunded)
    assert (outcome.action, outcome.refund_amount, outcome.rule) == (action, refund, rule)
    if action == "refund":
        assert outcome.reason == B1_CORRECTION_REASON


@pytest.mark.parametrize(
    "amount, refunded, error",
    [
        pytest.param(2000, 2001, ValueError, id="B1-refunded-more-than-paid-is-corrupt"),
        pytest.param(-1, 0, ValueError, id="B1-negative-amount"),
        pytest.param(20.0, 0, TypeError, id="B4-float-amount"),
    ],
)
def test_B1_late_success_refuses_bad_facts(amount, refunded, error):
    with pytest.raises(error):
        late_success("purchase", "canceled", False, amount, refunded)


@given(
    status=st.sampled_from(["incomplete", "active", "past_due", "canceled"]),
    amount=st.integers(min_value=0, max_value=10**9),
    data=st.data(),
)
def test_B1_a_purchase_is_applied_or_refunded_exactly_what_is_left(status, amount, data):
    refunded = data.draw(st.integers(min_value=0, max_value=amount))
    outcome = late_success("purchase", status, data.draw(st.booleans()), amount, refunded)
    if status == "incomplete":
        assert outcome.action == "apply" and outcome.refund_amount == 0
    else:
        assert outcome.action in ("refund", "nothing")
        assert outcome.refund_amount == amount - refunded  # in full: never more than paid, never less
        assert (outcome.action == "refund") == (amount - refunded > 0)
