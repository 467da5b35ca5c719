"""P1: billing details are validated on entry; invalid ones are refused and nothing is stored."""

from __future__ import annotations

import re

import pycountry
from email_validator import EmailNotValidError, validate_email

# The codes come from pycountry (the Debian iso-codes data: ISO 3166-1 and ISO 4217 as currently published), so a
# code the standard adds or withdraws (ZWG for ZWL in 2024, XCG for ANG in 2025, EUR for BGN in 2026) follows with a
# dependency update instead of an edit here. The API spells countries upper case and currencies lower case, as below.
COUNTRIES = frozenset(country.alpha_2 for country in pycountry.countries)

# ISO 4217 codes that are no country's legal tender, so nothing can be billed in them: the fund codes (ISO 4217's
# "IsFund" entries: units of account and settlement-day variants) and the X-range entries that are not a
# supranational currency (precious metals, the IMF's SDR, bond-market and development-bank units, the Sucre, the
# testing code and "no currency"). XAF, XCD, XCG, XOF and XPF are currencies of countries and stay accepted.
NOT_LEGAL_TENDER = frozenset(
    """bov che chw clf cou mxv usn uyi uyw xad xag xau xba xbb xbc xbd xdr xpd xpt xsu xts xua xxx""".split()
)

# Codes withdrawn from ISO 4217 since this service first accepted them. They stay accepted: a subscription priced
# in one keeps its locked price (B3) and is renewed, credited (R2) and refunded in it, and refusing the code would
# refuse those customers' credits too. Ops decide whether to sell new plans in them.
STILL_ACCEPTED = frozenset({"ang", "bgn", "sll", "zwl"})

# ISO 4217 active currency codes, lower case as the API spells them, without the ones above, and the withdrawn
# codes still accepted.
CURRENCIES = (frozenset(currency.alpha_3.lower() for currency in pycountry.currencies) - NOT_LEGAL_TENDER) | (
    STILL_ACCEPTED
)

MAX_NAME_LENGTH = 200


def check_email(email: str) -> str:
    """P1: a syntactically valid address; returns it trimmed. Raises ValueError with a clear message."""
    candidate = email.strip()
    try:
        validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None
    return candidate


# Text the service stores, shows, logs and mails carries no control characters: no terminal escapes in logs and
# consoles, no header injection through an e-mail subject. Refused: the C0 controls (below U+0020), DEL, the C1
# controls (U+0080-U+009F) and, in single-line text, the line and paragraph separators; multi-line text may use line
# feeds and tabs (not carriage returns: a line break is a line feed). Spaces and any other unicode are kept.
_LINE_SEPARATORS = "\u2028\u2029"


def control_characters(text: str, allowed: str = "") -> str:
    """P1/R2/D4: the control characters in `text` (except `allowed`), as `U+XXXX` codes, or ''."""
    found = sorted(
        {
            ch
            for ch in text
            if (ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in _LINE_SEPARATORS) and ch not in allowed
        }
    )
    return ", ".join(f"U+{ord(ch):04X}" for ch in found)


def check_single_line(text: str) -> str:
    """R2/R3/D4: one line of text (a reason, a message subject), without control characters."""
    if found := control_characters(text):
        raise ValueError(f"must be a single line without control characters (found {found})")
    return text


def check_multi_line(text: str) -> str:
    """D4: text with lines and tabs (a message body), without other control characters."""
    if found := control_characters(text, allowed="\n\t" + _LINE_SEPARATORS):
        raise ValueError(f"must not contain control characters other than line feeds and tabs (found {found})")
    return text


def check_name(name: str) -> str:
    """P1: a non-empty name after trimming, at most MAX_NAME_LENGTH characters, no control characters."""
    candidate = name.strip()
    if not candidate:
        raise ValueError("name must not be empty")
    if len(candidate) > MAX_NAME_LENGTH:
        raise ValueError(f"name must be at most {MAX_NAME_LENGTH} characters")
    if found := control_characters(candidate):
        raise ValueError(f"name must not contain control characters (found {found})")
    return candidate


def check_country(country: str) -> str:
    """P1: an ISO 3166-1 alpha-2 code, upper case exactly as the standard writes it."""
    if country not in COUNTRIES:
        raise ValueError("country must be an ISO 3166-1 alpha-2 code such as 'US' or 'DE'")
    return country


# P1/I1: a VAT or GST number, as businesses write it: the separators people type (spaces, dots, dashes, slashes)
# are dropped and letters upper-cased, then either an EU-style VAT number (two-letter prefix and 2 to 13 letters or
# digits: "DE123456789", "ATU12345678", "GB123456789", "CHE123456789") or a number-led GST/business number of 8 to
# 15 characters (Australia's ABN "51824753556", India's GSTIN "27AAPFU0939F1ZV", Canada's "123456789RT0001").
_TAX_ID_SEPARATORS = re.compile(r"[\s./-]+")
_TAX_ID = re.compile(r"[A-Z]{2}[A-Z0-9]{2,13}|[0-9][A-Z0-9]{7,14}")


def check_tax_id(tax_id: str) -> str:
    """P1/I1: a VAT or GST number in its normal form (separators dropped, upper case), or a refusal."""
    candidate = _TAX_ID_SEPARATORS.sub("", tax_id.strip()).upper()
    if not _TAX_ID.fullmatch(candidate) or not any(ch.isdigit() for ch in candidate):
        raise ValueError("tax_id must be a VAT or GST number such as 'DE123456789'")
    return candidate


def check_currency(currency: str) -> str:
    """P1/P2: money is integer minor units plus a lower-case ISO 4217 code of a currency in use that is some
    country's legal tender (not gold, the SDR, a fund code or the testing code); anything else is refused."""
    if currency not in CURRENCIES:
        raise ValueError("currency must be a lower-case ISO 4217 code such as 'usd'")
    return currency
