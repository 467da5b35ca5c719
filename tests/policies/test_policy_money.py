"""B3/P2/R2: tax with ROUND_HALF_UP, and credit spent before the card."""

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import pytest

from policies import (
    ROUNDING,
    ChargeBreakdown,
    PolicyDocument,
    charge_breakdown,
    tax_for,
)

POLICY = PolicyDocument(
    version="test",
    effective_from=datetime(2026, 1, 1, tzinfo=UTC),
    tax_rates={"DE": Decimal("0.19"), "GB": Decimal("0.20"), "XX": Decimal("0.125"), "ZZ": Decimal(0)},
)


def test_P2_rounding_rule_is_half_up():
    assert ROUNDING == ROUND_HALF_UP


@pytest.mark.parametrize(
    "amount, country, expected",
    [
        pytest.param(5000, "GB", 1000, id="P2-exact"),
        pytest.param(1999, "DE", 380, id="P2-379.81-rounds-up"),
        pytest.param(1050, "DE", 200, id="P2-199.5-half-rounds-up"),
        pytest.param(1049, "DE", 199, id="P2-199.31-rounds-down"),
        pytest.param(4, "XX", 1, id="P2-0.5-half-rounds-up"),
        pytest.param(3, "XX", 0, id="P2-0.375-rounds-down"),
        pytest.param(12, "XX", 2, id="P2-1.5-half-rounds-up-not-to-even"),
        pytest.param(20, "XX", 3, id="P2-2.5-half-rounds-up-not-to-even"),
        pytest.param(5000, "US", 0, id="P2-no-rate-no-tax"),
        pytest.param(5000, "ZZ", 0, id="P2-zero-rate"),
        pytest.param(0, "DE", 0, id="P2-zero-amount"),
        pytest.param(10**30 + 50, "DE", 19 * 10**28 + 10, id="P2-huge-amount-exact"),
    ],
)
def test_P2_tax_rounding_half_up(amount, country, expected):
    tax = tax_for(amount, country, POLICY)
    assert tax == expected
    assert type(tax) is int


@pytest.mark.parametrize(
    "amount, country, error",
    [
        pytest.param(-1, "DE", ValueError, id="P2-negative-amount"),
        pytest.param(19.99, "DE", TypeError, id="B4-float-amount"),
        pytest.param(1000, "de", ValueError, id="P1-lower-case-country"),
        pytest.param(1000, "", ValueError, id="P1-empty-country"),
    ],
)
def test_P2_tax_for_refuses_bad_input(amount, country, error):
    with pytest.raises(error):
        tax_for(amount, country, POLICY)


@pytest.mark.parametrize(
    "price, country, credit, expected",
    [
        pytest.param(5000, "US", 1500, ChargeBreakdown(5000, 0, 5000, 1500, 3500), id="R2-credit-1500-of-5000"),
        pytest.param(5000, "US", 0, ChargeBreakdown(5000, 0, 5000, 0, 5000), id="B3-no-credit"),
        pytest.param(5000, "GB", 1500, ChargeBreakdown(5000, 1000, 6000, 1500, 4500), id="P2-R2-taxed"),
        pytest.param(5000, "GB", 6000, ChargeBreakdown(5000, 1000, 6000, 6000, 0), id="R2-credit-covers-all"),
        pytest.param(5000, "GB", 9000, ChargeBreakdown(5000, 1000, 6000, 6000, 0), id="R2-credit-left-over"),
        pytest.param(0, "GB", 100, ChargeBreakdown(0, 0, 0, 0, 0), id="B3-free-price"),
    ],
)
def test_B3_P2_R2_charge_breakdown(price, country, credit, expected):
    assert charge_breakdown(price, country, POLICY, credit_balance=credit) == expected


@pytest.mark.parametrize(
    "price, credit",
    [pytest.param(-1, 0, id="B3-negative-price"), pytest.param(100, -1, id="R2-negative-credit")],
)
def test_B3_R2_charge_breakdown_refuses_negatives(price, credit):
    with pytest.raises(ValueError):
        charge_breakdown(price, "US", POLICY, credit_balance=credit)


def test_B3_inconsistent_breakdown_refused():
    with pytest.raises(ValueError):
        ChargeBreakdown(price=100, tax=0, total=90, credit_applied=0, card_amount=90)
