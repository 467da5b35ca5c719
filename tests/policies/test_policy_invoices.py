"""I1/I2/P2/R2: document numbers per series and year of issue, an invoice's figures, a refund's price/tax split."""

import itertools
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import (
    CREDIT_NOTE_SERIES,
    INVOICE_SERIES,
    REVERSE_CHARGE_NOTE,
    credit_note_split,
    document_number,
    document_year,
    invoice_figures,
    tax_rate_bps,
)


def test_I1_I2_numbers_per_series_and_year():
    assert document_number(INVOICE_SERIES, 2031, 1) == "INV-2031-000001"
    assert document_number(CREDIT_NOTE_SERIES, 2031, 1) == "CN-2031-000001"
    assert document_number(INVOICE_SERIES, 2031, 123_456) == "INV-2031-123456"
    assert document_number(INVOICE_SERIES, 2031, 1_000_000) == "INV-2031-1000000"  # grows, never wraps


@pytest.mark.parametrize(
    "series, year, sequence",
    [("XX", 2031, 1), (INVOICE_SERIES, 2031, 0), (INVOICE_SERIES, 10_000, 1), (INVOICE_SERIES, 2031, True)],
)
def test_I1_refuses_bad_numbers(series, year, sequence):
    with pytest.raises((ValueError, TypeError)):
        document_number(series, year, sequence)


def test_I1_year_of_issue_is_the_sellers():
    new_year_utc = datetime(2031, 12, 31, 23, 30, tzinfo=UTC)
    assert document_year(new_year_utc, UTC) == 2031
    assert document_year(new_year_utc, ZoneInfo("Europe/Berlin")) == 2032  # already 2032 in Berlin
    assert document_year(datetime(2032, 1, 1, 3, tzinfo=UTC), ZoneInfo("America/New_York")) == 2031
    assert document_year(new_year_utc, timezone(timedelta(hours=1))) == 2032
    with pytest.raises(ValueError):
        document_year(datetime(2031, 1, 1), UTC)  # naive


@pytest.mark.parametrize(
    "rate, bps",
    [(None, 0), (Decimal(0), 0), (Decimal("0.2"), 2000), (Decimal("0.19"), 1900), (Decimal("0.07125"), 713)],
)
def test_I1_tax_rate_in_basis_points(rate, bps):
    assert tax_rate_bps(rate) == bps


def test_I1_figures_of_a_payment():
    figures = invoice_figures(1000, 200, 300, 900, 2000, address_known=True)
    assert (figures.kind, figures.subtotal, figures.tax_rate_bps, figures.tax_amount) == ("full", 1000, 2000, 200)
    assert (figures.credit_applied, figures.total, figures.tax_note) == (300, 900, None)
    assert invoice_figures(1000, 200, 0, 1200, 2000, address_known=False).kind == "simplified"


def test_P2_I1_tax_notes_only_at_zero_rate():
    reverse = invoice_figures(1000, 0, 0, 1000, 2000, address_known=True, reverse_charge=True)
    assert (reverse.tax_rate_bps, reverse.tax_note) == (0, REVERSE_CHARGE_NOTE)
    exempt = invoice_figures(1000, 0, 0, 1000, 0, address_known=True, exemption_note="Exempt, art. 132")
    assert exempt.tax_note == "Exempt, art. 132"
    assert invoice_figures(1000, 0, 0, 1000, 0, address_known=True).tax_note is None
    taxed = invoice_figures(1000, 200, 0, 1200, 2000, address_known=True, exemption_note="Exempt")
    assert taxed.tax_note is None


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((1000, 200, 0, 1199, 2000), {}),  # total is not price + tax - credit
        ((1000, 200, 0, 1200, 2000), {"reverse_charge": True}),  # reverse charge with tax
        ((1000, -1, 0, 999, 2000), {}),
        ((1000, 200, 0, 1200, 10_000), {}),
    ],
)
def test_I1_refuses_inconsistent_figures(args, kwargs):
    with pytest.raises(ValueError):
        invoice_figures(*args, address_known=True, **kwargs)


def test_I2_split_in_the_invoices_proportion():
    whole = credit_note_split(1000, 200, 1200, 0, 1200)
    assert (whole.price_amount, whole.tax_amount) == (1000, 200)
    half = credit_note_split(1000, 200, 1200, 0, 600)
    assert (half.price_amount, half.tax_amount) == (500, 100)
    # One unit at a time: the cumulative tax share is 0.16, 0.32, 0.48, 0.64 -> 0, 0, 0, 1 (half up).
    cents = [credit_note_split(999, 190, 1189, before, 1) for before in range(4)]
    assert [part.tax_amount for part in cents] == [0, 0, 0, 1]


def test_I2_three_thirds_credit_exactly_the_tax():
    parts = [
        credit_note_split(1000, 199, 1199, before, amount) for before, amount in ((0, 400), (400, 400), (800, 399))
    ]
    assert sum(p.tax_amount for p in parts) == 199
    assert sum(p.price_amount for p in parts) == 1000


def test_R2_I2_never_more_than_the_invoice():
    with pytest.raises(ValueError):
        credit_note_split(1000, 200, 1200, 1000, 201)
    with pytest.raises(ValueError):
        credit_note_split(1000, 200, 1200, 0, 0)


def test_I2_credit_applied_refunds_the_share_of_what_was_paid():
    # 300 of the 1200 were paid by account credit: the card's 900 carry 3/4 of the tax.
    whole = credit_note_split(1000, 200, 900, 0, 900)
    assert (whole.price_amount, whole.tax_amount) == (750, 150)


@st.composite
def invoices_and_refunds(draw):
    subtotal = draw(st.integers(min_value=0, max_value=10**9))
    tax = draw(st.integers(min_value=0, max_value=10**8))
    gross = subtotal + tax
    if gross == 0:
        subtotal, gross = 1, 1 + tax
    credit = draw(st.integers(min_value=0, max_value=gross - 1))
    total = gross - credit
    cuts = (
        sorted(draw(st.lists(st.integers(min_value=1, max_value=total - 1), max_size=8, unique=True)))
        if total > 1
        else []
    )
    bounds = [0, *cuts, total]
    return subtotal, tax, total, [b - a for a, b in itertools.pairwise(bounds)]


@given(invoices_and_refunds())
def test_I2_parts_sum_to_the_whole(case):
    subtotal, tax, total, amounts = case
    before, parts = 0, []
    for amount in amounts:
        parts.append(credit_note_split(subtotal, tax, total, before, amount))
        before += amount
    whole = credit_note_split(subtotal, tax, total, 0, total)
    assert sum(p.tax_amount for p in parts) == whole.tax_amount
    assert sum(p.price_amount for p in parts) == whole.price_amount
    if total == subtotal + tax:  # no credit applied: the whole refund credits exactly the invoice's tax
        assert (whole.price_amount, whole.tax_amount) == (subtotal, tax)


@given(invoices_and_refunds())
def test_I2_parts_never_exceed_and_are_never_negative(case):
    subtotal, tax, total, amounts = case
    before = 0
    for amount in amounts:
        part = credit_note_split(subtotal, tax, total, before, amount)
        assert part.price_amount + part.tax_amount == amount
        assert 0 <= part.tax_amount <= tax and 0 <= part.price_amount <= subtotal
        before += amount
    with pytest.raises(ValueError):
        credit_note_split(subtotal, tax, total, total, 1)


@given(invoices_and_refunds(), st.data())
def test_I2_cumulative_split_is_monotonic(case, data):
    subtotal, tax, total, _ = case
    smaller = data.draw(st.integers(min_value=1, max_value=total))
    larger = data.draw(st.integers(min_value=smaller, max_value=total))
    low, high = (credit_note_split(subtotal, tax, total, 0, amount) for amount in (smaller, larger))
    assert low.tax_amount <= high.tax_amount and low.price_amount <= high.price_amount
