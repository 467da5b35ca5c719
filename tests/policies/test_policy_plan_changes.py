"""C3/C4 (with B1..B5, C1, R1, R2, P2): plan changes at the period end and immediate upgrades, pure."""

import calendar
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import (
    ACTION_WINDOW,
    FORFEIT_ROUNDING,
    PendingChange,
    PlanOffer,
    PolicyDocument,
    PolicyError,
    SubscriptionTerms,
    after_failed_charge,
    begin_immediate_change,
    change_charge,
    change_decision,
    charge_breakdown,
    complete_immediate_change,
    forfeited,
    immediate_change,
    is_upgrade,
    load_policy_book,
    next_period_terms,
    parse_policy,
    pending_change_expired,
    period_bounds,
    schedule_cancellation,
    schedule_change,
    terms_at,
    withdraw_change,
    yearly_value,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


POLICY = PolicyDocument("test", utc(2026, 1, 1), tax_rates={"DE": Decimal("0.19")})
NO_UPGRADES = replace(POLICY, allow_immediate_upgrade=False)
JAN31 = utc(2027, 1, 31, 10)
PRO = PlanOffer("pro", 2000, "usd", "month")
PRO_YEAR = PlanOffer("pro_year", 20000, "usd", "year")


def sub(status="active", plan="basic", price=1000, currency="usd", interval="month", anchor=JAN31, index=0, **kw):
    start, end = period_bounds(anchor, interval, index)
    return SubscriptionTerms(status, plan, price, currency, interval, anchor, start, end, **kw)


def bounds(terms: SubscriptionTerms) -> tuple[datetime, datetime]:
    return terms.current_period_start, terms.current_period_end


# --- C3/C4: who may change, to what (refusal codes exactly as the API contract names them) -------------------

NOW = utc(2027, 2, 10)


@pytest.mark.parametrize(
    "terms, customer, target, when, policy, code, rule",
    [
        pytest.param(sub("canceled"), "active", PRO, "period_end", POLICY, "subscription_ended", "C3", id="C3-ended"),
        pytest.param(sub("canceled"), "active", PRO, "now", POLICY, "subscription_ended", "C3", id="C4-ended"),
        pytest.param(
            sub(), "terminated", PRO, "period_end", POLICY, "subscription_ended", "C3", id="C3-R3-terminated-customer"
        ),
        pytest.param(
            sub("canceled"), "suspended", PRO, "now", POLICY, "subscription_ended", "C3", id="C3-ended-before-suspended"
        ),
        pytest.param(
            sub("incomplete"),
            "active",
            PRO,
            "period_end",
            POLICY,
            "subscription_incomplete",
            "B1",
            id="C3-B1-incomplete",
        ),
        pytest.param(
            sub("incomplete"), "active", PRO, "now", POLICY, "subscription_incomplete", "B1", id="C4-B1-incomplete"
        ),
        pytest.param(
            sub("past_due"), "active", PRO, "period_end", POLICY, "subscription_past_due", "B5", id="C3-B5-past-due"
        ),
        pytest.param(
            sub("past_due"),
            "active",
            PlanOffer("basic", 1000, "usd", "month"),
            "now",
            POLICY,
            "subscription_past_due",
            "B5",
            id="C4-past-due-before-same-plan",
        ),
        pytest.param(sub(), "suspended", PRO, "period_end", POLICY, "customer_suspended", "R3", id="C3-R3-suspended"),
        pytest.param(sub(), "suspended", PRO, "now", POLICY, "customer_suspended", "R3", id="C4-R3-suspended"),
        pytest.param(
            sub(),
            "active",
            PlanOffer("basic", 1500, "usd", "month"),
            "period_end",
            POLICY,
            "same_plan",
            "C3",
            id="C3-same-plan-even-at-a-new-list-price",
        ),
        pytest.param(
            sub(),
            "active",
            PlanOffer("basic", 1500, "usd", "month"),
            "now",
            POLICY,
            "same_plan",
            "C3",
            id="C4-same-plan",
        ),
        pytest.param(
            sub(),
            "active",
            PlanOffer("pro", 2000, "usd", "month", active=False),
            "period_end",
            POLICY,
            "plan_not_available",
            "C3",
            id="C3-inactive-plan",
        ),
        pytest.param(
            sub(),
            "active",
            PlanOffer("pro", 2000, "eur", "month"),
            "period_end",
            POLICY,
            "plan_not_available",
            "C3",
            id="C3-another-currency",
        ),
        pytest.param(
            sub(),
            "active",
            PlanOffer("pro", 2000, "eur", "month"),
            "now",
            POLICY,
            "plan_not_available",
            "C3",
            id="C4-another-currency",
        ),
        pytest.param(
            sub(),
            "active",
            PlanOffer("lite", 500, "usd", "month"),
            "now",
            POLICY,
            "not_an_upgrade",
            "C4",
            id="C4-cheaper",
        ),
        pytest.param(
            sub(),
            "active",
            PlanOffer("annual", 12000, "usd", "year"),
            "now",
            POLICY,
            "not_an_upgrade",
            "C4",
            id="C4-equal-yearly-value-is-not-higher",
        ),
        pytest.param(
            sub(interval="year", price=12000),
            "active",
            PlanOffer("m", 1000, "usd", "month"),
            "now",
            POLICY,
            "not_an_upgrade",
            "C4",
            id="C4-yearly-to-equal-monthly",
        ),
        pytest.param(
            sub(), "active", PRO, "now", NO_UPGRADES, "not_an_upgrade", "C4", id="C4-allow_immediate_upgrade-off"
        ),
    ],
)
def test_C3_C4_change_refusals(terms, customer, target, when, policy, code, rule):
    decision = change_decision(terms, customer, target, when, NOW, policy)
    assert (decision.allowed, decision.code, decision.rule) == (False, code, rule)


@pytest.mark.parametrize(
    "terms, target, when, rule",
    [
        pytest.param(sub(), PlanOffer("lite", 500, "usd", "month"), "period_end", "C3", id="C3-downgrade-ok"),
        pytest.param(sub(), PRO_YEAR, "period_end", "C3", id="C3-monthly-to-yearly"),
        pytest.param(sub(interval="year", price=12000), PRO, "period_end", "C3", id="C3-yearly-to-monthly"),
        pytest.param(sub(), PlanOffer("annual", 12001, "usd", "year"), "now", "C4", id="C4-one-unit-higher"),
        pytest.param(sub(), PRO, "now", "C4", id="C4-monthly-upgrade"),
        pytest.param(sub(), PRO, "period_end", "C3", id="C3-upgrade-at-period-end-too"),
        pytest.param(sub(cancel_at_period_end=True), PRO, "period_end", "C3", id="C3-while-cancellation-scheduled"),
        pytest.param(schedule_change(sub(), PRO_YEAR, NOW), PRO, "now", "C4", id="C4-replaces-a-pending-change"),
        pytest.param(
            sub(price=1000),
            PlanOffer("plus", 1200, "usd", "month"),
            "now",
            "C4",
            id="C4-B3-compared-with-the-locked-price",
        ),
    ],
)
def test_C3_C4_change_allowed(terms, target, when, rule):
    decision = change_decision(terms, "active", target, when, NOW, POLICY)
    assert (decision.allowed, decision.code, decision.rule) == (True, None, rule)


def test_C3_C4_unknown_when_or_customer_status_is_a_programming_error():
    with pytest.raises(ValueError):
        change_decision(sub(), "active", PRO, "tomorrow", NOW, POLICY)
    with pytest.raises(ValueError):
        change_decision(sub(), "gone", PRO, "now", NOW, POLICY)
    with pytest.raises(ValueError):
        change_decision(sub(), "active", PRO, "now", datetime(2027, 2, 10), POLICY)


@pytest.mark.parametrize(
    "price, interval, expected",
    [(1000, "month", 12000), (12000, "year", 12000), (0, "month", 0), (999, "year", 999)],
)
def test_C4_yearly_value_normalises_like_mrr(price, interval, expected):
    assert yearly_value(price, interval) == expected


# --- C4: allow_immediate_upgrade in the versioned policy document --------------------------------------------


def test_C4_allow_immediate_upgrade_defaults_to_true_in_every_shipped_version():
    assert all(document.allow_immediate_upgrade is True for document in load_policy_book().documents)


def test_C4_allow_immediate_upgrade_is_read_from_the_document():
    text = 'version = "x"\neffective_from = 2027-01-01T00:00:00Z\n[plan_changes]\nallow_immediate_upgrade = false\n'
    assert parse_policy(text).allow_immediate_upgrade is False


@pytest.mark.parametrize("value", ["1", '"true"', "0", "[true]"])
def test_C4_allow_immediate_upgrade_must_be_a_boolean(value):
    text = f'version = "x"\neffective_from = 2027-01-01T00:00:00Z\n[plan_changes]\nallow_immediate_upgrade = {value}\n'
    with pytest.raises(PolicyError):
        parse_policy(text)
    with pytest.raises(PolicyError):
        PolicyDocument("x", utc(2027, 1, 1), allow_immediate_upgrade=1)


def test_C4_unknown_plan_changes_key_is_refused():
    with pytest.raises(PolicyError):
        parse_policy('version = "x"\neffective_from = 2027-01-01T00:00:00Z\n[plan_changes]\nallow_downgrade = true\n')


# --- C3: at the period end --------------------------------------------------------------------------------------


def test_C3_schedule_locks_todays_list_price_and_changes_nothing_else_until_the_period_end():
    terms = sub()
    scheduled = schedule_change(terms, PRO_YEAR, NOW)
    assert scheduled.pending_change == PendingChange(
        "period_end", "pro_year", 20000, "usd", "year", NOW, effective_at=terms.current_period_end
    )
    assert replace(scheduled, pending_change=None) == terms  # plan, price, period, access unchanged
    assert terms_at(scheduled, terms.current_period_end - timedelta(microseconds=1)) == scheduled


@pytest.mark.parametrize(
    "anchor, interval, periods_before, target, expected",
    [
        pytest.param(
            JAN31,
            "month",
            0,
            PRO_YEAR,
            [(utc(2027, 2, 28, 10), utc(2028, 2, 28, 10)), (utc(2028, 2, 28, 10), utc(2029, 2, 28, 10))],
            id="C3-B4-bought-31-Jan-monthly-to-yearly-at-28-Feb",
        ),
        pytest.param(
            JAN31,
            "month",
            1,
            PRO_YEAR,
            [(utc(2027, 3, 31, 10), utc(2028, 3, 31, 10)), (utc(2028, 3, 31, 10), utc(2029, 3, 31, 10))],
            id="C3-B4-bought-31-Jan-monthly-to-yearly-at-31-Mar",
        ),
        pytest.param(
            JAN31,
            "month",
            1,
            PRO,
            [(utc(2027, 3, 31, 10), utc(2027, 4, 30, 10)), (utc(2027, 4, 30, 10), utc(2027, 5, 31, 10))],
            id="C3-B4-new-monthly-anchor-31-Mar-clamps-and-returns",
        ),
        pytest.param(
            utc(2028, 1, 29),
            "month",
            0,
            PRO_YEAR,
            [
                (utc(2028, 2, 29), utc(2029, 2, 28)),
                (utc(2029, 2, 28), utc(2030, 2, 28)),
                (utc(2030, 2, 28), utc(2031, 2, 28)),
                (utc(2031, 2, 28), utc(2032, 2, 29)),
            ],
            id="C3-B4-yearly-from-29-Feb-2028-back-on-29-Feb-2032",
        ),
        pytest.param(
            utc(2028, 2, 29),
            "year",
            0,
            PRO,
            [(utc(2029, 2, 28), utc(2029, 3, 28)), (utc(2029, 3, 28), utc(2029, 4, 28))],
            id="C3-B4-bought-29-Feb-yearly-to-monthly",
        ),
    ],
)
def test_C3_B4_periods_counted_from_the_period_end_with_the_new_interval(
    anchor, interval, periods_before, target, expected
):
    terms = sub(anchor=anchor, interval=interval, price=1000 if interval == "month" else 12000)
    for _ in range(periods_before):
        terms = next_period_terms(terms)
    renewed = next_period_terms(schedule_change(terms, target, terms.current_period_start))
    assert (renewed.plan, renewed.price, renewed.interval) == (target.plan, target.price, target.interval)
    assert renewed.anchor == terms.current_period_end and renewed.pending_change is None
    seen = [bounds(renewed)]
    for _ in expected[1:]:
        renewed = next_period_terms(renewed)
        seen.append(bounds(renewed))
    assert seen == expected


def test_B4_renewal_without_a_change_keeps_the_anchor():
    terms = sub()
    ends = []
    for _ in range(3):
        terms = next_period_terms(terms)
        ends.append(terms.current_period_end)
    assert ends == [utc(2027, 3, 31, 10), utc(2027, 4, 30, 10), utc(2027, 5, 31, 10)]


def test_C3_B3_deactivated_or_repriced_plan_still_takes_effect_at_its_locked_price():
    scheduled = schedule_change(sub(), PRO, NOW)
    # later the plan is deactivated and relisted at 2500: the renewal needs no offer, only the locked change
    renewed = next_period_terms(scheduled)
    assert (renewed.plan, renewed.price) == ("pro", 2000)
    assert next_period_terms(renewed).price == 2000  # and every renewal after it (B3)


def test_C3_B5_failed_renewal_after_a_change_is_retried_at_the_new_price_showing_the_new_plan():
    scheduled = schedule_change(sub(), PRO, NOW)
    renewed = next_period_terms(scheduled)
    failed = replace(renewed, status="past_due")
    outcome = after_failed_charge(renewed.current_period_start, 1, POLICY)
    assert outcome.next_retry_at == scheduled.current_period_end + timedelta(days=1)
    assert failed.plan == "pro"
    assert change_charge(scheduled.pending_change, "DE", POLICY) == charge_breakdown(failed.price, "DE", POLICY)


def test_C3_B2_change_asked_after_the_period_end_instant_applies_to_the_next_period_end():
    terms = sub()
    late = terms.current_period_end + timedelta(hours=5)  # the renewal job has not run yet
    scheduled = schedule_change(terms_at(terms, late), PRO, late)
    assert scheduled.pending_change.effective_at == utc(2027, 3, 31, 10)


# --- C1/C2/C3: one pending change, withdrawals -------------------------------------------------------------------


def test_C3_a_new_change_replaces_the_pending_one():
    terms = schedule_change(schedule_change(sub(), PRO_YEAR, NOW), PRO, NOW + timedelta(hours=1))
    assert terms.pending_change.plan == "pro" and terms.pending_change.asked_at == NOW + timedelta(hours=1)


def test_C3_C1_cancellation_withdraws_the_change_and_a_change_withdraws_the_cancellation():
    cancelled = schedule_cancellation(schedule_change(sub(), PRO, NOW))
    assert (cancelled.cancel_at_period_end, cancelled.pending_change) == (True, None)
    changed = schedule_change(cancelled, PRO, NOW)
    assert changed.cancel_at_period_end is False and changed.pending_change.plan == "pro"
    assert terms_at(cancelled, cancelled.current_period_end).status == "canceled"


def test_C3_withdrawal_renews_the_old_plan_as_if_nothing_was_asked():
    terms = sub()
    assert withdraw_change(schedule_change(terms, PRO, NOW)) == terms
    assert next_period_terms(withdraw_change(schedule_change(terms, PRO, NOW))) == next_period_terms(terms)


def test_C1_C3_pending_change_and_cancellation_cannot_coexist():
    pending = PendingChange("period_end", "pro", 2000, "usd", "month", NOW, effective_at=sub().current_period_end)
    with pytest.raises(ValueError):
        sub(cancel_at_period_end=True, pending_change=pending)


# --- C4: immediate upgrade -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "terms, target, paid_at, period, days, value",
    [
        pytest.param(
            sub(),
            PRO_YEAR,
            utc(2027, 2, 15, 10),
            (utc(2027, 2, 15, 10), utc(2028, 2, 15, 10)),
            13,
            464,
            id="C4-R1-13-of-28-days-464.28-rounds-down",
        ),
        pytest.param(
            sub(),
            PRO_YEAR,
            utc(2027, 2, 15, 10, 0, 1),
            (utc(2027, 2, 15, 10, 0, 1), utc(2028, 2, 15, 10, 0, 1)),
            12,
            428,
            id="C4-R1-whole-days-rounded-down",
        ),
        pytest.param(sub(), PRO, JAN31, (JAN31, utc(2027, 2, 28, 10)), 28, 1000, id="C4-at-the-period-start"),
        pytest.param(
            sub(),
            PRO,
            utc(2027, 2, 28, 9, 59),
            (utc(2027, 2, 28, 9, 59), utc(2027, 3, 28, 9, 59)),
            0,
            0,
            id="C4-last-minute",
        ),
        pytest.param(
            sub(index=2),
            PRO,
            utc(2027, 3, 31, 10),
            (utc(2027, 3, 31, 10), utc(2027, 4, 30, 10)),
            30,
            1000,
            id="C4-B4-new-anchor-31-Mar",
        ),
        pytest.param(
            sub(anchor=utc(2028, 2, 1)),
            PRO_YEAR,
            utc(2028, 2, 29, 12),
            (utc(2028, 2, 29, 12), utc(2029, 2, 28, 12)),
            0,
            0,
            id="C4-B4-paid-29-Feb-yearly",
        ),
    ],
)
def test_C4_new_period_starts_at_the_payment_and_the_rest_is_forfeited(terms, target, paid_at, period, days, value):
    change = immediate_change(terms, target, paid_at, paid_at)
    assert (change.terms.plan, change.terms.price, change.terms.interval) == (
        target.plan,
        target.price,
        target.interval,
    )
    assert change.terms.anchor == paid_at and bounds(change.terms) == period
    assert (change.forfeited_days, change.forfeited_value) == (days, value)


def test_C4_B4_29_Feb_anchor_renews_28_Feb_and_returns_to_29_Feb_in_leap_years():
    change = immediate_change(sub(anchor=utc(2028, 2, 1)), PRO_YEAR, utc(2028, 2, 29, 12), utc(2028, 2, 29, 12))
    ends = [change.terms.current_period_end]
    terms = change.terms
    for _ in range(3):
        terms = next_period_terms(terms)
        ends.append(terms.current_period_end)
    assert ends == [utc(2029, 2, 28, 12), utc(2030, 2, 28, 12), utc(2031, 2, 28, 12), utc(2032, 2, 29, 12)]


def test_C4_charge_is_the_full_list_price_of_the_day_asked_with_tax_and_credits_first():
    pending = begin_immediate_change(sub(), PRO, NOW).pending_change
    assert change_charge(pending, "DE", POLICY, credit_balance=500) == charge_breakdown(2000, "DE", POLICY, 500)
    breakdown = change_charge(pending, "DE", POLICY, credit_balance=500)
    assert (breakdown.price, breakdown.tax, breakdown.credit_applied, breakdown.card_amount) == (2000, 380, 500, 1880)
    assert change_charge(pending, "DE", POLICY, credit_balance=9999).card_amount == 0


def test_C4_waiting_change_expires_after_23_hours_or_at_the_period_end():
    terms = sub()
    early = begin_immediate_change(terms, PRO, NOW).pending_change
    assert early.expires_at == NOW + ACTION_WINDOW == NOW + timedelta(hours=23)
    late_ask = terms.current_period_end - timedelta(hours=2)
    late = begin_immediate_change(terms, PRO, late_ask).pending_change
    assert late.expires_at == terms.current_period_end
    assert not pending_change_expired(early, early.expires_at - timedelta(microseconds=1))
    assert pending_change_expired(early, early.expires_at)


def test_C4_B1_waiting_change_keeps_the_old_terms_and_an_expired_one_buys_nothing():
    terms = sub()
    waiting = begin_immediate_change(terms, PRO, NOW)
    assert replace(waiting, pending_change=None) == terms
    with pytest.raises(ValueError):
        complete_immediate_change(waiting, waiting.pending_change, NOW + ACTION_WINDOW)
    done = complete_immediate_change(waiting, waiting.pending_change, NOW + timedelta(hours=22))
    assert done.terms.plan == "pro" and done.terms.pending_change is None
    # unpaid at the period end: the old plan renews as if nothing had been asked
    late = begin_immediate_change(terms, PRO, terms.current_period_end - timedelta(hours=1))
    assert terms_at(late, terms.current_period_end) == next_period_terms(terms)


def test_C4_C1_paid_upgrade_clears_a_scheduled_cancellation():
    change = immediate_change(sub(cancel_at_period_end=True), PRO, NOW, NOW)
    assert change.terms.cancel_at_period_end is False


def test_C4_forfeit_rounding_is_the_named_rule():
    assert FORFEIT_ROUNDING == ROUND_DOWN


# --- properties ----------------------------------------------------------------------------------------------

PROPERTY = settings(max_examples=150, deadline=None, database=None)
intervals = st.sampled_from(["month", "year"])
prices = st.integers(min_value=0, max_value=10**9)


@st.composite
def instants(draw) -> datetime:
    year, month = draw(st.integers(2000, 2100)), draw(st.integers(1, 12))
    day = min(draw(st.sampled_from([1, 15, 28, 29, 30, 31])), calendar.monthrange(year, month)[1])
    return datetime(year, month, day, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 86_399)))


@st.composite
def subscriptions(draw) -> SubscriptionTerms:
    interval = draw(intervals)
    return sub(price=draw(prices), interval=interval, anchor=draw(instants()), index=draw(st.integers(0, 30)))


@st.composite
def offers(draw) -> PlanOffer:
    return PlanOffer(draw(st.sampled_from(["a", "b", "c"])), draw(prices), "usd", draw(intervals))


def inside(draw, terms: SubscriptionTerms) -> datetime:
    span = terms.current_period_end - terms.current_period_start
    return terms.current_period_start + timedelta(seconds=draw(st.integers(0, int(span.total_seconds()) - 1)))


@PROPERTY
@given(
    data=st.data(),
    terms=subscriptions(),
    target=offers(),
    credit=st.integers(0, 10**10),
    country=st.sampled_from(["DE", "US"]),
)
def test_C4_R1_R2_a_change_never_refunds_or_credits_anything(data, terms, target, credit, country):
    paid_at = inside(data.draw, terms)
    change = immediate_change(terms, target, paid_at, paid_at)
    charge = change_charge(
        PendingChange(
            "now", target.plan, target.price, "usd", target.interval, paid_at, expires_at=paid_at + ACTION_WINDOW
        ),
        country,
        POLICY,
        credit,
    )
    # the full new price is charged whatever is forfeited (no proration), credit is only spent, never granted
    assert charge.price == target.price and charge.total >= charge.price
    assert 0 <= charge.credit_applied <= credit and charge.card_amount >= 0
    assert charge.credit_applied + charge.card_amount == charge.total
    assert change.forfeited_value >= 0 and change.terms.price == target.price


@PROPERTY
@given(
    data=st.data(),
    terms=subscriptions(),
    ops=st.lists(st.tuples(st.sampled_from(["change", "immediate", "withdraw", "cancel"]), offers()), max_size=8),
)
def test_C3_C1_at_most_one_pending_change_and_never_with_a_cancellation(data, terms, ops):
    asked_at = inside(data.draw, terms)
    for op, target in ops:
        if op == "change":
            terms = schedule_change(terms, target, asked_at)
            assert terms.pending_change.plan == target.plan  # the newest replaces any earlier one
        elif op == "immediate":
            terms = begin_immediate_change(terms, target, asked_at)
        elif op == "withdraw":
            terms = withdraw_change(terms)
        else:
            terms = schedule_cancellation(terms)
        assert terms.pending_change is None or isinstance(terms.pending_change, PendingChange)
        assert not (terms.pending_change is not None and terms.cancel_at_period_end)


@PROPERTY
@given(data=st.data(), terms=subscriptions(), target=offers(), immediate=st.booleans())
def test_C3_schedule_then_withdraw_leaves_the_subscription_identical(data, terms, target, immediate):
    asked_at = inside(data.draw, terms)
    ask = begin_immediate_change if immediate else schedule_change
    assert withdraw_change(ask(terms, target, asked_at)) == terms


@PROPERTY
@given(data=st.data(), terms=subscriptions())
def test_C4_R1_forfeited_days_and_value_stay_within_the_period_and_price(data, terms):
    where = data.draw(st.sampled_from(["start", "end", "inside"]))
    at = {"start": terms.current_period_start, "end": terms.current_period_end}.get(where) or inside(data.draw, terms)
    period_days = (terms.current_period_end - terms.current_period_start).days
    days, value = forfeited(terms.current_period_start, terms.current_period_end, at, terms.price)
    assert 0 <= days <= period_days and 0 <= value <= terms.price
    assert value == terms.price * days // period_days  # FORFEIT_ROUNDING: down, in integers


@PROPERTY
@given(a=prices, a_interval=intervals, b=prices, b_interval=intervals)
def test_C4_upgrade_is_antisymmetric(a, a_interval, b, b_interval):
    if is_upgrade(a, a_interval, b, b_interval):
        assert not is_upgrade(b, b_interval, a, a_interval)
    assert not is_upgrade(a, a_interval, a, a_interval)
    assert is_upgrade(a, a_interval, b, b_interval) == (yearly_value(b, b_interval) > yearly_value(a, a_interval))


@PROPERTY
@given(terms=subscriptions(), target=offers())
def test_C3_B4_renewal_after_a_change_starts_at_the_old_period_end(terms, target):
    renewed = next_period_terms(schedule_change(terms, target, terms.current_period_start))
    assert renewed.current_period_start == renewed.anchor == terms.current_period_end
    assert bounds(renewed) == period_bounds(terms.current_period_end, target.interval, 0)
