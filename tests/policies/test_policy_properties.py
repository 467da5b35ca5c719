"""B4/T4/T5/R2/P2: properties that must hold for every input, checked with hypothesis."""

import calendar
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from policies import (
    PersonHistory,
    PolicyDocument,
    add_periods,
    charge_breakdown,
    refund_decision,
    tax_for,
    trial_eligibility,
    trial_notice_days_left,
    trial_notice_due,
    trial_terms,
)

PROPERTY = settings(max_examples=200, deadline=None, database=None)


@st.composite
def instants(draw) -> datetime:
    """UTC instants 1970..2200, with days 29..31 drawn often so month-end clamping is exercised."""
    year, month = draw(st.integers(1970, 2200)), draw(st.integers(1, 12))
    day = min(draw(st.integers(1, 31)), calendar.monthrange(year, month)[1])
    time_of_day = timedelta(microseconds=draw(st.integers(0, 86_400 * 10**6 - 1)))
    return datetime(year, month, day, tzinfo=UTC) + time_of_day


intervals = st.sampled_from(["month", "year"])
counts = st.integers(min_value=0, max_value=600)
countries = st.sampled_from(["DE", "GB", "FR", "US", "XX"])
rates = st.integers(min_value=0, max_value=9999).map(lambda n: Decimal(n).scaleb(-4))  # 0.0000 .. 0.9999


def months_of(interval: str) -> int:
    return 12 if interval == "year" else 1


@PROPERTY
@given(anchor=instants(), interval=intervals, n=counts, m=counts)
def test_B4_add_periods_is_monotone_and_never_drifts(anchor, interval, n, m):
    result = add_periods(anchor, interval, n)
    # never drifts: the target month is exact and the day is the anchor's, clamped to that month's last day
    year, month_index = divmod(anchor.year * 12 + anchor.month - 1 + n * months_of(interval), 12)
    assert (result.year, result.month) == (year, month_index + 1)
    assert result.day == min(anchor.day, calendar.monthrange(result.year, result.month)[1])
    assert result.timetz() == anchor.timetz() and result.tzinfo is anchor.tzinfo
    # computed from the anchor: a year is exactly twelve months
    if interval == "year":
        assert result == add_periods(anchor, "month", 12 * n)
    # monotone in count (strictly: a later period always ends later)
    other = add_periods(anchor, interval, m)
    assert (n < m) == (result < other) and (n == m) == (result == other)


@PROPERTY
@given(
    start=instants(),
    trial_days=st.integers(min_value=1, max_value=90),
    notice_days=st.integers(min_value=0, max_value=90),
    offsets=st.lists(st.integers(min_value=-10 * 86400, max_value=100 * 86400), max_size=10),
)
def test_T4_trial_expiring_notice_sent_exactly_once(start, trial_days, notice_days, offsets):
    policy = PolicyDocument(
        "p", datetime(1970, 1, 1, tzinfo=UTC), trial_days=trial_days, notice_days_before_trial_end=notice_days
    )
    terms = trial_terms(start, policy)
    assert terms.started_at <= terms.notice_at <= terms.ends_at
    times = [start + timedelta(seconds=offset) for offset in offsets]  # any order, repeats allowed
    sent, sends = False, 0
    for now in times:
        if trial_notice_due(terms.notice_at, now, sent):
            sent, sends = True, sends + 1
    assert sends <= 1
    assert (sends == 1) == any(now >= terms.notice_at for now in times)


@PROPERTY
@given(
    start=instants(),
    trial_days=st.integers(min_value=1, max_value=90),
    notice_days=st.integers(min_value=0, max_value=90),
    offsets=st.lists(st.integers(min_value=-10 * 86400, max_value=100 * 86400), max_size=10),
)
def test_T4_trial_notice_never_after_the_end_and_never_promises_more_than_is_left(
    start, trial_days, notice_days, offsets
):
    """T4: whenever the scheduler runs, at most one notice; none at or after the end; the days it states are the
    whole days left, rounded up, never more than the notice window (or the trial, if shorter)."""
    policy = PolicyDocument(
        "p", datetime(1970, 1, 1, tzinfo=UTC), trial_days=trial_days, notice_days_before_trial_end=notice_days
    )
    terms = trial_terms(start, policy)
    sent = 0
    for now in (start + timedelta(seconds=offset) for offset in offsets):
        days = trial_notice_days_left(terms.notice_at, terms.ends_at, now, sent > 0)
        if days is None:
            continue
        sent += 1
        assert terms.notice_at <= now < terms.ends_at
        assert 1 <= days <= min(notice_days, trial_days)
        assert timedelta(days=days - 1) < terms.ends_at - now <= timedelta(days=days)
    assert sent <= 1


histories = st.builds(PersonHistory, had_trial=st.booleans(), had_paid_subscription=st.booleans())


@PROPERTY
@given(history=histories, later=histories, offers=st.booleans())
def test_T5_eligibility_is_monotone(history, later, offers):
    if history.had_trial or history.had_paid_subscription:
        assert not trial_eligibility(history, offers).allowed
    # learning more about the person (facts only ever become True) never turns a refusal into a grant
    grown = PersonHistory(
        history.had_trial or later.had_trial, history.had_paid_subscription or later.had_paid_subscription
    )
    if not trial_eligibility(history, offers).allowed:
        assert not trial_eligibility(grown, offers).allowed


# (role, reason) pairs: every way an attempt can be refused or approved, drawn in one step
ACTORS = [("ops", "goodwill"), ("ops", ""), ("ops", "  "), ("customer", "goodwill")]
attempts = st.lists(st.tuples(st.sampled_from(ACTORS), st.integers(min_value=-100, max_value=20_000)), max_size=10)


@PROPERTY
@given(paid=st.integers(min_value=0, max_value=20_000), tries=attempts)
def test_R2_approved_refunds_never_exceed_payment(paid, tries):
    refunded = 0
    for (role, reason), amount in tries:
        decision = refund_decision(role, paid, refunded, amount, reason)
        if decision.allowed:
            assert role == "ops" and reason.strip() and amount >= 1
            refunded += amount
        else:  # refused only for a reason R2 names
            assert not (role == "ops" and reason.strip() and 1 <= amount <= paid - refunded)
        assert refunded <= paid


def policy_with(rate: Decimal) -> PolicyDocument:
    return PolicyDocument("p", datetime(2026, 1, 1, tzinfo=UTC), tax_rates={"DE": rate, "GB": rate / 2})


@PROPERTY
@given(
    price=st.integers(min_value=0, max_value=10**12),
    country=countries,
    rate=rates,
    credit=st.integers(min_value=0, max_value=2 * 10**12),
)
def test_B3_P2_R2_tax_and_charge_breakdown_add_up(price, country, rate, credit):
    policy = policy_with(rate)
    tax = tax_for(price, country, policy)
    assert type(tax) is int and tax >= 0  # P2: never negative, always an int
    exact = Decimal(price) * policy.tax_rates.get(country, Decimal(0))
    assert -Decimal("0.5") < tax - exact <= Decimal("0.5")  # one rounding step, half up
    charge = charge_breakdown(price, country, policy, credit_balance=credit)
    assert (charge.price, charge.tax) == (price, tax)
    assert charge.total == charge.price + charge.tax
    assert charge.card_amount + charge.credit_applied == charge.total
    assert charge.credit_applied == min(credit, charge.total)
    for value in (charge.price, charge.tax, charge.total, charge.credit_applied, charge.card_amount):
        assert type(value) is int and value >= 0
