"""Money for people to read: integer minor units (the API's amounts) as "12.34 USD".

The one formatter of the service: the notices (app/notices/templates.py), the ops console (app/console/routes.py)
and the sandbox demo (app/sandbox/demo.py) all call `format_money`. The API itself never formats money: it sends
`{"amount": 1234, "currency": "usd"}`.
"""

from __future__ import annotations

# ISO 4217 minor units of the currencies whose minor unit is not the hundredth (every other currency the service
# accepts, see policies.details.CURRENCIES, has two decimals). pycountry, where the accepted codes come from, does
# not carry the minor units; tests/test_formatting.py checks that every code here is an accepted one.
MINOR_UNIT_DIGITS = {
    **dict.fromkeys(
        "bif clp djf gnf isk jpy kmf krw pyg rwf ugx vnd vuv xaf xof xpf".split(),
        0,
    ),
    **dict.fromkeys("bhd iqd jod kwd lyd omr tnd".split(), 3),
}


def minor_unit_digits(currency: str) -> int:
    """How many decimals the currency's minor unit has (ISO 4217): 0 for JPY, 3 for KWD, otherwise 2."""
    return MINOR_UNIT_DIGITS.get(currency.lower(), 2)


def format_money(amount: int, currency: str, *, grouping: bool = False) -> str:
    """`amount` minor units of `currency` as "1234.50 USD" ("1,234.50 USD" with `grouping`), "1234 JPY",
    "1.234 KWD"; a negative amount as "-12.34 USD". Exact (integer arithmetic, never a float). Without a currency
    (an empty string) only the number."""
    digits = minor_unit_digits(currency)
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(int(amount)), 10**digits)
    number = f"{major:,}" if grouping else str(major)
    if digits:
        number = f"{number}.{minor:0{digits}d}"
    return f"{sign}{number} {currency.upper()}" if currency else f"{sign}{number}"
