"""P1/P2/R2/R3/D4: billing details as the policy checks them. Text the service stores, shows, logs and mails carries
no control characters (checked for every string with hypothesis); country and currency codes are ISO's, from
pycountry, and a currency must be one that can be billed."""

import unicodedata

import pycountry
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.details import (
    NOT_LEGAL_TENDER,
    check_country,
    check_currency,
    check_multi_line,
    check_name,
    check_single_line,
)

PROPERTY = settings(max_examples=300, deadline=None, database=None)


def is_control(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc" or ch in "\u2028\u2029"


@PROPERTY
@given(st.text(max_size=60))
def test_single_line_text_is_kept_exactly_or_refused_for_a_control_character(text):
    try:
        assert check_single_line(text) == text
    except ValueError:
        assert any(is_control(ch) for ch in text)
    else:
        assert not any(is_control(ch) for ch in text)


@PROPERTY
@given(st.text(max_size=60))
def test_multi_line_text_allows_only_line_feeds_and_tabs_among_controls(text):
    refused = any(is_control(ch) and ch not in "\n\t\u2028\u2029" for ch in text)
    if refused:
        with pytest.raises(ValueError):
            check_multi_line(text)
    else:
        assert check_multi_line(text) == text


@pytest.mark.parametrize("name", ["Ali\x07ce", "Ali\x1b[31mce", "Ali\u0085ce", "Ali\x7fce", "Ali\r\nce"])
def test_P1_a_name_with_a_control_character_is_refused(name):
    with pytest.raises(ValueError, match="control characters"):
        check_name(name)


def test_ordinary_unicode_is_kept():
    text = "Remboursement geste commercial — client fidèle ✓"
    assert check_single_line(text) == check_multi_line(text) == text
    assert check_name("  Zoë Ångström-O'Brien  ") == "Zoë Ångström-O'Brien"


# P1/P2: country and currency codes come from pycountry (ISO 3166-1, ISO 4217 as published today).


@pytest.mark.parametrize("currency", ["usd", "eur", "jpy", "kwd", "zwg", "xcg", "xaf", "xof", "xcd", "xpf"])
def test_P1_a_lower_case_currency_in_use_is_accepted(currency):
    assert check_currency(currency) == currency


@pytest.mark.parametrize(
    "currency",
    [
        "xau",  # gold: not legal tender, nothing can be billed in it
        "xag",
        "xpt",
        "xdr",  # the IMF's special drawing right
        "xts",  # the testing code
        "xxx",  # "no currency"
        "usn",  # a fund code
        "clf",
        "USD",  # the API spells currencies in lower case
        "Usd",
        "us",
        "usdd",
        "",
    ],
)
def test_P1_a_currency_that_cannot_be_billed_is_refused(currency):
    with pytest.raises(ValueError, match="lower-case ISO 4217 code"):
        check_currency(currency)


@pytest.mark.parametrize("currency", ["zwl", "bgn", "ang", "sll"])
def test_P1_a_withdrawn_currency_that_was_accepted_before_stays_accepted(currency):
    # B3/R2: subscriptions priced in it keep billing and must stay creditable
    assert check_currency(currency) == currency


def test_the_codes_refused_as_not_legal_tender_are_iso_4217_codes():
    assert {currency.alpha_3.lower() for currency in pycountry.currencies} >= NOT_LEGAL_TENDER


@pytest.mark.parametrize("country", ["US", "DE", "ZW", "SS", "GB"])
def test_P1_an_upper_case_alpha_2_country_is_accepted(country):
    assert check_country(country) == country


@pytest.mark.parametrize("country", ["us", "Us", "USA", "UK", "XK", "EU", "ZZ", "", "U"])
def test_P1_a_country_that_is_not_an_assigned_alpha_2_code_is_refused(country):
    with pytest.raises(ValueError, match="ISO 3166-1 alpha-2"):
        check_country(country)
