"""R3/D3/B5: policies.standing: what a customer's standing allows, and the past-due access grace."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from policies import (
    LIVE_SUBSCRIPTION,
    SUBSCRIPTION_GIVING_ACCESS,
    AccessFacts,
    CustomerAction,
    CustomerStatus,
    PolicyDocument,
    SubscriptionStatus,
    access,
    customer_may,
    load_policy_book,
    past_due_grace_days,
)

ALL = list(CustomerStatus)


@pytest.mark.parametrize("action", [CustomerAction.BUY, CustomerAction.START_TRIAL])
@pytest.mark.parametrize("status", ALL)
def test_only_an_active_customer_buys_or_starts_a_trial(action, status):
    decision = customer_may(action, status)
    assert decision.allowed == (status == CustomerStatus.ACTIVE)
    assert decision.rule == "R3"
    if not decision.allowed:
        assert decision.code == "customer_inactive"
        assert decision.reason == f"the customer is {status.value}"


@pytest.mark.parametrize("status", ALL)
def test_no_credit_for_an_account_that_is_over(status):
    decision = customer_may(CustomerAction.GRANT_CREDIT, status)
    ended = status in (CustomerStatus.TERMINATED, CustomerStatus.ERASED)
    assert decision.allowed is not ended
    if ended:
        assert (decision.code, decision.rule) == ("customer_terminated", "R3")
        assert decision.reason == f"the account is {status.value}: no credit can be granted"


@pytest.mark.parametrize("status", ALL)
def test_the_standing_of_an_account_that_is_over_changes_no_more(status):
    decision = customer_may(CustomerAction.CHANGE_STANDING, status)
    ended = status in (CustomerStatus.TERMINATED, CustomerStatus.ERASED)
    assert decision.allowed is not ended  # active and suspended accounts can be suspended, lifted, terminated
    if ended:
        assert (decision.code, decision.rule) == ("customer_terminated", "R3")
        assert decision.reason == f"the account is {status.value}; it cannot change any more"


@pytest.mark.parametrize("status", ALL)
def test_an_erased_customer_has_no_details_to_correct(status):
    decision = customer_may(CustomerAction.CORRECT_DETAILS, status)
    assert decision.allowed == (status != CustomerStatus.ERASED)
    if not decision.allowed:
        assert (decision.code, decision.rule) == ("customer_erased", "D3")


def test_plain_strings_are_accepted_and_unknown_ones_refused():
    assert customer_may("buy", "active").allowed
    assert not customer_may("start_trial", "suspended").allowed
    with pytest.raises(ValueError):
        customer_may("buy", "archived")
    with pytest.raises(ValueError):
        customer_may("fly", "active")


@pytest.mark.parametrize(("schedule", "grace"), [((3, 7, 14), 14), ((5,), 5), ((), 0)])
def test_past_due_access_lasts_until_the_last_retry_date(schedule, grace):
    policy = PolicyDocument(version="v", effective_from=datetime(2026, 1, 1, tzinfo=UTC), retry_schedule_days=schedule)
    assert past_due_grace_days(policy) == grace


def test_the_shipped_policies_give_a_grace_of_the_last_retry():
    for policy in load_policy_book(None).documents:
        assert past_due_grace_days(policy) == max(policy.retry_schedule_days, default=0)


@pytest.mark.parametrize("status", list(SubscriptionStatus))
def test_the_subscriptions_giving_access_are_the_live_ones_policies_access_grants_on(status):
    assert SUBSCRIPTION_GIVING_ACCESS < LIVE_SUBSCRIPTION
    now = datetime(2027, 1, 1, tzinfo=UTC)
    facts = AccessFacts(
        customer_status="active",
        subscription_status=status,
        subscription_period_end=datetime(2027, 2, 1, tzinfo=UTC),
        subscription_plan="pro",
    )
    assert access(facts, now).has_access == (status in SUBSCRIPTION_GIVING_ACCESS)
