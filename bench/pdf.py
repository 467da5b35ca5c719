"""How fast an invoice PDF renders (issue 17: rendered at issue, or at its first download, in the request).

    .venv/bin/python bench/pdf.py [--seconds 3]

Prints `name: value` lines, as bench/run.py does: `invoice_pdf_renders_per_s`, `credit_note_pdf_renders_per_s`
(one process, one core, renders of a one-line invoice with tax and credit applied) and the size of one.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.invoices.pdf import render_credit_note, render_invoice

ISSUED = _dt.datetime(2031, 3, 1, 12, 0, tzinfo=_dt.UTC)
INVOICE = {
    "id": "inv_bench",
    "number": "INV-2031-000042",
    "kind": "full",
    "customer_id": "cus_bench",
    "subscription_id": "sub_bench",
    "payment_id": "pay_bench",
    "issued_at": ISSUED,
    "currency": "eur",
    "seller": {"name": "Acme Billing GmbH", "address": "Friedrichstraße 1\n10117 Berlin\nGermany", "tax_id": "DE1"},
    "buyer": {
        "name": "Zoë Łukasiewicz",
        "country": "PL",
        "address": {"line1": "ul. Długa 5", "line2": None, "city": "Kraków", "postal_code": "31-147", "region": None},
        "tax_id": None,
    },
    "lines": [
        {
            "description": "Pro (monthly subscription)",
            "plan": "pro-monthly",
            "period_start": ISSUED,
            "period_end": ISSUED + _dt.timedelta(days=31),
            "unit_amount": 123456,
            "quantity": 1,
            "amount": 123456,
        }
    ],
    "subtotal": 123456,
    "tax_rate_bps": 2300,
    "tax_amount": 28395,
    "tax_note": None,
    "credit_applied": 1000,
    "total": 150851,
}
CREDIT_NOTE = {
    "id": "cn_bench",
    "number": "CN-2031-000007",
    "invoice_id": "inv_bench",
    "invoice_number": "INV-2031-000042",
    "invoice_issued_at": ISSUED,
    "refund_id": "re_bench",
    "customer_id": "cus_bench",
    "issued_at": ISSUED,
    "currency": "eur",
    "seller": INVOICE["seller"],
    "buyer": INVOICE["buyer"],
    "tax_rate_bps": 2300,
    "amount": 5000,
    "price_amount": 4065,
    "tax_amount": 935,
}


def rate(render, document: dict, seconds: float) -> float:
    render(document)  # warm-up (imports, font metrics)
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        render(document)
        count += 1
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(f"invoice_pdf_renders_per_s: {rate(render_invoice, INVOICE, args.seconds):.0f}")
    print(f"credit_note_pdf_renders_per_s: {rate(render_credit_note, CREDIT_NOTE, args.seconds):.0f}")
    print(f"invoice_pdf_bytes: {len(render_invoice(INVOICE))}")


if __name__ == "__main__":
    main()
