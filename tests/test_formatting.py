"""The one money formatter for people (app/formatting.py), and the three places that show money through it."""

import pytest

from app.console.routes import money as console_money
from app.formatting import MINOR_UNIT_DIGITS, format_money, minor_unit_digits
from app.notices.templates import money as notice_money
from app.sandbox.demo import _money as demo_money
from policies.details import CURRENCIES


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1234, "usd", "12.34 USD"),
        (5, "eur", "0.05 EUR"),
        (0, "usd", "0.00 USD"),
        (123456789, "usd", "1234567.89 USD"),
        (-1234, "usd", "-12.34 USD"),
        (-5, "gbp", "-0.05 GBP"),
        (1000, "jpy", "1000 JPY"),
        (-1000, "jpy", "-1000 JPY"),
        (1234, "kwd", "1.234 KWD"),
        (5, "kwd", "0.005 KWD"),
        (1000, "clp", "1000 CLP"),
        (1234, "zwg", "12.34 ZWG"),
        (1234, "", "12.34"),
    ],
)
def test_minor_units_as_major_units(amount, currency, text):
    assert format_money(amount, currency) == text


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (123456789, "usd", "1,234,567.89 USD"),
        (99999, "usd", "999.99 USD"),
        (1000000, "jpy", "1,000,000 JPY"),
        (1234567, "kwd", "1,234.567 KWD"),
        (-123456, "eur", "-1,234.56 EUR"),
    ],
)
def test_thousands_separators_when_asked(amount, currency, text):
    assert format_money(amount, currency, grouping=True) == text


def test_exact_beyond_a_float_s_precision():
    assert format_money(2**60 + 1, "usd") == f"{(2**60 + 1) // 100}.{(2**60 + 1) % 100:02d} USD"


def test_minor_units_follow_iso_4217():
    assert (minor_unit_digits("usd"), minor_unit_digits("JPY"), minor_unit_digits("kwd")) == (2, 0, 3)
    assert set(MINOR_UNIT_DIGITS) <= CURRENCIES  # every code named there is one the service accepts


def test_the_notices_show_money_as_before():
    assert notice_money(1999, "usd") == "19.99 USD"
    assert notice_money(123456, "eur") == "1234.56 EUR"


def test_the_console_shows_money_as_before():
    assert console_money(1999, "usd") == "19.99 USD"
    assert console_money(-1999, "usd") == "-19.99 USD"
    assert console_money(None, "usd") == "—"
    assert console_money(1999, None) == "19.99"


def test_the_demo_shows_money_as_before():
    assert demo_money(123456, "usd") == "1,234.56 USD"
    assert demo_money(1500, "jpy") == "1,500 JPY"


def test_zero_and_three_decimal_currencies_are_right_everywhere():
    """Before app/formatting.py the notices and the console showed 1000 JPY as "10.00 JPY" and 1234 KWD as
    "12.34 KWD", the demo 1234 KWD as "12.34 KWD"."""
    assert notice_money(1000, "jpy") == console_money(1000, "jpy") == "1000 JPY"
    assert notice_money(1234, "kwd") == console_money(1234, "kwd") == demo_money(1234, "kwd") == "1.234 KWD"
