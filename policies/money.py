"""B3/P2/R2: money in int minor units; tax via Decimal with one named rounding rule; credit before card."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal

from ._checks import require_int
from .document import PolicyDocument

ROUNDING = ROUND_HALF_UP  # the one named rounding rule (P2 tax)
_COUNTRY = re.compile(r"[A-Z]{2}")


def tax_for(amount: int, country: str, policy: PolicyDocument) -> int:
    """P2: tax on `amount` (minor units) at the country's rate, rounded ROUND_HALF_UP; 0 if no rate.

    `country` must be an upper-case ISO 3166-1 alpha-2 code (P1 validates it on entry); amount >= 0.
    """
    require_int(amount, "amount", minimum=0)
    if not isinstance(country, str) or not _COUNTRY.fullmatch(country):
        raise ValueError(f"country must be an upper-case ISO 3166-1 alpha-2 code, got {country!r}")
    rate = policy.tax_rates.get(country)
    if rate is None or amount == 0:
        return 0
    # Enough precision that the product is exact before the single rounding step.
    context = Context(prec=len(str(amount)) + len(rate.as_tuple().digits) + 2, rounding=ROUNDING)
    exact = context.multiply(Decimal(amount), rate)
    return int(exact.quantize(Decimal(1), rounding=ROUNDING, context=context))


@dataclass(frozen=True)
class ChargeBreakdown:
    """B3/P2/R2: what one charge consists of, all in int minor units."""

    price: int  # the locked price (B3)
    tax: int  # P2
    total: int  # price + tax
    credit_applied: int  # R2: credit spent on this charge, min(credit_balance, total)
    card_amount: int  # total - credit_applied: what the payment method is charged (may be 0)

    def __post_init__(self) -> None:
        for name in ("price", "tax", "total", "credit_applied", "card_amount"):
            require_int(getattr(self, name), name, minimum=0)
        if self.total != self.price + self.tax or self.card_amount != self.total - self.credit_applied:
            raise ValueError("inconsistent charge breakdown")


def charge_breakdown(price: int, country: str, policy: PolicyDocument, credit_balance: int = 0) -> ChargeBreakdown:
    """B3/P2/R2: price (the locked price) + tax, with account credit spent before the payment method."""
    require_int(price, "price", minimum=0)
    require_int(credit_balance, "credit_balance", minimum=0)
    tax = tax_for(price, country, policy)
    total = price + tax
    credit_applied = min(credit_balance, total)
    return ChargeBreakdown(
        price=price, tax=tax, total=total, credit_applied=credit_applied, card_amount=total - credit_applied
    )
