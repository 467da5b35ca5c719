"""I1/I2/P2/R2: invoices and credit notes as figures: document numbers, what an invoice shows, a refund's split.

Pure: the issue time, the seller's time zone and the payment's figures come in; numbers and figures come out. The
counter that makes numbering gapless is the database's (app/invoices/repository.py); this module only says what a
number looks like and which year's sequence an issue belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal

from ._checks import require_aware, require_int
from .decision import Decision

INVOICE_SERIES = "INV"  # I1
CREDIT_NOTE_SERIES = "CN"  # I2
SERIES = (INVOICE_SERIES, CREDIT_NOTE_SERIES)
REVERSE_CHARGE_NOTE = "Reverse charge"  # P2/I1: the note of a zero-rated business supply
BPS_ROUNDING = ROUND_HALF_UP  # I1: a rate of finer grain than a basis point is shown rounded half up


def billing_address_decision(tax_id: str | None, address: object | None) -> Decision:
    """I1: a business customer (with a tax id) gives a billing address before a paid charge (its invoice is a full
    one); a customer without a tax id may buy without (a simplified invoice)."""
    if tax_id and address is None:
        return Decision(
            False, "billing_address_required", "I1", "A customer with a tax id must give a billing address first."
        )
    return Decision(True, None, "I1", "The invoice can name the buyer as billed.")


def document_year(issued_at: datetime, seller_timezone: tzinfo) -> int:
    """I1/I2: the calendar year of issue in the seller's time zone: the year whose sequence numbers the document."""
    require_aware(issued_at, "issued_at")
    return issued_at.astimezone(seller_timezone).year


def document_number(series: str, year: int, sequence: int) -> str:
    """I1/I2: `INV-2031-000001`: the series, the year of issue, the sequence number within that year (at least six
    digits, more once a year passes 999,999 documents)."""
    if series not in SERIES:
        raise ValueError(f"series must be one of {SERIES}, got {series!r}")
    require_int(year, "year", minimum=1)
    require_int(sequence, "sequence", minimum=1)
    if year > 9999:
        raise ValueError(f"year must have four digits, got {year}")
    return f"{series}-{year:04d}-{sequence:06d}"


def tax_rate_bps(rate: Decimal | None) -> int:
    """I1/P2: a tax rate (0.2) in basis points (2000); no rate is 0."""
    if rate is None:
        return 0
    if not isinstance(rate, Decimal) or not rate.is_finite() or not Decimal(0) <= rate < Decimal(1):
        raise ValueError(f"rate must be a Decimal with 0 <= rate < 1, got {rate!r}")
    return int((rate * 10_000).quantize(Decimal(1), rounding=BPS_ROUNDING))


@dataclass(frozen=True)
class InvoiceFigures:
    """I1/P2/R2: the figures an invoice shows, in int minor units of the payment's currency."""

    kind: str  # "full" when the buyer's billing address is known, "simplified" otherwise
    subtotal: int  # the price before tax
    tax_rate_bps: int  # 2000 = 20 %
    tax_amount: int
    tax_note: str | None  # at a 0 % rate: the exemption note, or "Reverse charge"; else None
    credit_applied: int  # R2: account credit spent on this charge (after tax; it does not reduce the taxable amount)
    total: int  # what was charged: subtotal + tax_amount - credit_applied (the payment's amount)


def invoice_figures(
    price: int,
    tax: int,
    credit_applied: int,
    amount: int,
    rate_bps: int,
    *,
    address_known: bool,
    reverse_charge: bool = False,
    exemption_note: str | None = None,
) -> InvoiceFigures:
    """I1/P2/R2: what the invoice of a succeeded payment shows. `price`, `tax`, `credit_applied` and `amount` are the
    payment's own figures (amount = price + tax - credit); `rate_bps` the rate the tax was computed at. A zero tax
    shows a 0 % rate and a note: "Reverse charge" for a business customer of a reverse-charge country, otherwise
    the exemption note (None when none is configured). Inconsistent figures raise ValueError."""
    for name, value in (("price", price), ("tax", tax), ("credit_applied", credit_applied), ("amount", amount)):
        require_int(value, name, minimum=0)
    require_int(rate_bps, "rate_bps", minimum=0)
    if rate_bps >= 10_000:
        raise ValueError(f"rate_bps must be below 10000, got {rate_bps}")
    if amount != price + tax - credit_applied:
        raise ValueError("the payment's amount must be price + tax - credit_applied")
    if reverse_charge and tax:
        raise ValueError("a reverse-charge supply carries no tax")
    zero_rated = tax == 0
    note = (REVERSE_CHARGE_NOTE if reverse_charge else exemption_note) if zero_rated else None
    return InvoiceFigures(
        kind="full" if address_known else "simplified",
        subtotal=price,
        tax_rate_bps=0 if zero_rated else rate_bps,
        tax_amount=tax,
        tax_note=note,
        credit_applied=credit_applied,
        total=amount,
    )


@dataclass(frozen=True)
class CreditSplit:
    """I2: one credit note's refunded amount split into price and tax (amount = price_amount + tax_amount)."""

    amount: int
    price_amount: int
    tax_amount: int


def _tax_share(cumulative: int, subtotal: int, tax: int) -> int:
    """The tax part of the first `cumulative` minor units refunded, rounded half up, in the invoice's proportion."""
    gross = subtotal + tax
    return (2 * cumulative * tax + gross) // (2 * gross)


def credit_note_split(subtotal: int, tax: int, total: int, refunded_before: int, amount: int) -> CreditSplit:
    """I2/R2: split a refund of `amount` of an invoice (its `subtotal`, `tax` and `total` charged) into price and
    tax in the invoice's proportion, `tax / (subtotal + tax)`, allocated on the cumulative amount refunded: this
    refund's tax is the tax share of everything refunded so far, this one included, less the share of what
    `refunded_before` already credited. So several parts that refund the whole credit exactly the invoice's tax (the
    last part takes what remains), no part is negative, and the parts grow with the amount refunded. Refunding more
    in total than the invoice's total raises ValueError (R2: never more than was paid)."""
    for name, value in (("subtotal", subtotal), ("tax", tax), ("total", total), ("refunded_before", refunded_before)):
        require_int(value, name, minimum=0)
    require_int(amount, "amount", minimum=1)
    if total > subtotal + tax:
        raise ValueError("an invoice's total is at most its subtotal plus tax")
    if refunded_before + amount > total:
        raise ValueError(f"refunds would total {refunded_before + amount}, more than the invoice's {total}")
    tax_part = _tax_share(refunded_before + amount, subtotal, tax) - _tax_share(refunded_before, subtotal, tax)
    return CreditSplit(amount=amount, price_amount=amount - tax_part, tax_amount=tax_part)
