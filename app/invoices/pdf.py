"""I1/I2: an invoice or a credit note as a one-page A4 PDF, rendered from the document as its GET shows it.

Library: fpdf2 (LGPL-3.0, maintained, pure Python: no system library, nothing to add to the image). Measured here
(bench/pdf.py, one core): about 110 invoices a second, 9 ms each. Alternatives: WeasyPrint (HTML + CSS, prettier to
write) needs pango and cairo in the image and embeds and subsets TrueType fonts, which is what made the other two
slow when tried on this machine: ReportLab with an embedded TrueType font took about 30 ms a page, fpdf2 with one
about 350 ms (the font parsed and subset for each document); WeasyPrint itself was not measured.

So the PDF uses the standard PDF font Helvetica in its Windows-1252 encoding, which every PDF reader has and which
needs no embedding: it covers the Latin alphabets of Western Europe and the euro and pound signs. A character
outside it (a name in another script) is printed as its closest Latin letter when it has one (NFKD: "ř" becomes
"r"; "Ł", which has no decomposition, becomes "L" by the table below) and as "?" otherwise; the JSON document keeps
the exact text.

The output is deterministic: the creation date is the issue time (fpdf2 derives the file id from the content and
that date), so the same document renders to the same bytes (the stored PDF is served byte for byte all the same).
"""

from __future__ import annotations

import datetime as _dt
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from fpdf import FPDF

from app.formatting import minor_unit_digits

ENCODING = "windows-1252"
_NO_DECOMPOSITION = str.maketrans({"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Ø": "O", "ø": "o", "ı": "i"})
_SYMBOL = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}

INK = (33, 37, 41)
MUTED = (108, 117, 125)
RULE = (206, 212, 218)
BAND = (241, 243, 245)
ACCENT = (31, 78, 121)


def money(amount: int, currency: str) -> str:
    """I1: minor units for humans: 123456 usd -> "$1,234.56", 1000 jpy -> "¥1,000", chf -> "CHF 12.50"."""
    exponent = minor_unit_digits(currency)  # ISO 4217, the one table (app/formatting.py)
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(amount), 10**exponent)
    figure = f"{major:,}" + (f".{minor:0{exponent}d}" if exponent else "")
    symbol = _SYMBOL.get(currency.lower())
    return f"{sign}{symbol}{figure}" if symbol else f"{sign}{currency.upper()} {figure}"


def _date(value: Any) -> str:
    if isinstance(value, str):
        value = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, _dt.datetime):
        return ""
    return f"{value.day} {value:%b %Y}"


def printable(text: str | None) -> str:
    """What Helvetica in Windows-1252 can print of `text` (see the module docstring)."""
    if not text:
        return ""
    out = []
    for char in text.translate(_NO_DECOMPOSITION):
        try:
            char.encode(ENCODING)
            out.append(char)
        except UnicodeEncodeError:
            base = unicodedata.normalize("NFKD", char).encode(ENCODING, "ignore").decode(ENCODING)
            out.append(base or "?")
    return "".join(out)


class _Page(FPDF):
    def __init__(self, issued_at: Any, number: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.core_fonts_encoding = ENCODING
        self.set_margins(18, 16, 18)
        self.set_auto_page_break(True, margin=20)
        self.set_title(printable(number))
        self.set_creator("billing")
        when = issued_at if isinstance(issued_at, _dt.datetime) else _dt.datetime.fromisoformat(issued_at)
        self.set_creation_date(when)
        self.add_page()

    def put(
        self,
        size: float,
        value: str | None,
        *,
        bold: bool = False,
        color: tuple = INK,
        w: float = 0,
        h: float = 5,
        align: str = "L",
        fill: bool = False,
        new_x: str = "RIGHT",
        new_y: str = "TOP",
    ) -> None:
        """A cell of text, as `FPDF.cell` lays it out, drawn with the plain `FPDF.text` operator: about twice as
        fast as `cell` (which shapes and styles each line), which matters at a few dozen cells per document."""
        self.set_font("Helvetica", "B" if bold else "", size)
        self.set_text_color(*color)
        x, y = self.x, self.y
        width = w or self.w - self.r_margin - x
        if fill:
            self.rect(x, y, width, h, style="F")
        text = printable(value)
        while text and size > 6.5 and self.get_string_width(text) > width - 2 * self.c_margin:
            size -= 0.5  # a cell never spills into the next: a long plan name is set smaller, never cut
            self.set_font("Helvetica", "B" if bold else "", size)
        if text:
            left = x + self.c_margin if align == "L" else x + width - self.c_margin - self.get_string_width(text)
            self.text(left, y + 0.5 * h + 0.3 * self.font_size, text)
        self.set_xy({"RIGHT": x + width, "LEFT": x, "LMARGIN": self.l_margin}[new_x], y + h if new_y == "NEXT" else y)


def _party(pdf: _Page, x: float, y: float, width: float, title: str, lines: Sequence[str | None]) -> float:
    pdf.set_xy(x, y)
    pdf.put(8, title.upper(), bold=True, color=MUTED, w=width, h=5, new_x="LEFT", new_y="NEXT")
    first = True
    for line in lines:
        if not line:
            continue
        for part in str(line).splitlines():
            pdf.set_x(x)
            pdf.put(10 if first else 9, part, bold=first, w=width, h=5 if first else 4.5, new_x="LEFT", new_y="NEXT")
            first = False
    return pdf.get_y()


def _address(address: Mapping[str, Any] | str | None) -> list[str]:
    if not address:
        return []
    if isinstance(address, str):
        return address.splitlines()
    city = " ".join(part for part in (address.get("postal_code"), address.get("city")) if part)
    return [part for part in (address.get("line1"), address.get("line2"), city, address.get("region")) if part]


def _header(pdf: _Page, title: str, number: str, facts: Sequence[tuple[str, str]]) -> None:
    pdf.set_fill_color(*ACCENT)
    pdf.rect(0, 0, 210, 4, style="F")
    pdf.set_xy(18, 16)
    pdf.put(22, title, bold=True, color=ACCENT, w=100, h=10)
    pdf.set_xy(112, 17)
    pdf.put(12, number, bold=True, w=80, h=6, align="R", new_x="LEFT", new_y="NEXT")
    for label, value in facts:
        pdf.set_x(112)
        pdf.put(9, f"{label}: {value}", color=MUTED, w=80, h=5, align="R", new_x="LEFT", new_y="NEXT")


def _parties(pdf: _Page, seller: Mapping[str, Any], buyer: Mapping[str, Any]) -> None:
    top = 48
    seller_lines = [seller.get("name"), *_address(seller.get("address"))]
    if seller.get("tax_id"):
        seller_lines.append(f"Tax ID: {seller['tax_id']}")
    buyer_lines = [buyer.get("name") or "Customer", *_address(buyer.get("address")), buyer.get("country")]
    if buyer.get("tax_id"):
        buyer_lines.append(f"Tax ID: {buyer['tax_id']}")
    bottom = max(_party(pdf, 18, top, 84, "From", seller_lines), _party(pdf, 112, top, 80, "Bill to", buyer_lines))
    pdf.set_draw_color(*RULE)
    pdf.line(18, bottom + 5, 192, bottom + 5)
    pdf.set_y(bottom + 10)


_COLUMNS = (
    (66, "Description", "L"),
    (48, "Period", "L"),
    (12, "Qty", "R"),
    (24, "Unit price", "R"),
    (24, "Amount", "R"),
)


def _table(pdf: _Page, rows: Sequence[Sequence[str]]) -> None:
    pdf.set_fill_color(*BAND)
    pdf.set_x(18)
    for width, label, align in _COLUMNS:
        pdf.put(8, label.upper(), bold=True, color=MUTED, w=width, h=8, align=align, fill=True)
    pdf.ln(8)
    pdf.set_draw_color(*RULE)
    for row in rows:
        pdf.set_x(18)
        for (width, _, align), value in zip(_COLUMNS, row, strict=True):
            pdf.put(9.5, value, w=width, h=9, align=align)
        pdf.ln(9)
        pdf.line(18, pdf.get_y(), 192, pdf.get_y())
    pdf.ln(4)


def _totals(pdf: _Page, rows: Sequence[tuple[str, str, bool]]) -> None:
    for label, value, strong in rows:
        pdf.set_x(112)
        if strong:
            pdf.set_draw_color(*INK)
            pdf.line(112, pdf.get_y() + 1, 192, pdf.get_y() + 1)
            pdf.ln(2)
            pdf.set_x(112)
        size = 11 if strong else 9.5
        pdf.put(size, label, bold=strong, color=INK if strong else MUTED, w=50, h=7)
        pdf.put(size, value, bold=strong, w=30, h=7, align="R", new_x="LMARGIN", new_y="NEXT")


def _footer(pdf: _Page, notes: Sequence[str]) -> None:
    pdf.ln(8)
    for note in notes:
        pdf.set_x(18)
        pdf.put(9, note, color=MUTED, w=174, h=5, new_x="LMARGIN", new_y="NEXT")


def _rate(bps: int) -> str:
    whole, rest = divmod(bps, 100)
    return f"{whole}%" if not rest else f"{whole}.{rest:02d}".rstrip("0") + "%"


def render_invoice(invoice: Mapping[str, Any]) -> bytes:
    """I1: the invoice (as `app.invoices.schemas.invoice_to_api` gives it) as PDF bytes."""
    currency = invoice["currency"]
    kind = "Invoice" if invoice["kind"] == "full" else "Simplified invoice"
    pdf = _Page(invoice["issued_at"], invoice["number"])
    lines = invoice["lines"]
    supply = f"{_date(lines[0]['period_start'])} - {_date(lines[0]['period_end'])}" if lines else ""
    _header(pdf, kind, invoice["number"], [("Issued", _date(invoice["issued_at"])), ("Date of supply", supply)])
    _parties(pdf, invoice["seller"], invoice["buyer"])
    rows = [
        (
            line["description"],
            f"{_date(line['period_start'])} - {_date(line['period_end'])}",
            "1",
            money(line["unit_amount"], currency),
            money(line["amount"], currency),
        )
        for line in lines
    ]
    _table(pdf, rows)
    tax_label = f"Tax ({_rate(invoice['tax_rate_bps'])})"
    totals = [("Subtotal (before tax)", money(invoice["subtotal"], currency), False)]
    totals.append((tax_label, money(invoice["tax_amount"], currency), False))
    if invoice["credit_applied"]:
        totals.append(("Account credit applied", money(-invoice["credit_applied"], currency), False))
    totals.append((f"Total charged ({currency.upper()})", money(invoice["total"], currency), True))
    _totals(pdf, totals)
    notes = [invoice["tax_note"]] if invoice.get("tax_note") else []
    notes.append(f"Payment {invoice['payment_id']}. Amounts in {currency.upper()}.")
    _footer(pdf, notes)
    return bytes(pdf.output())


def render_credit_note(note: Mapping[str, Any]) -> bytes:
    """I2: the credit note (as `app.invoices.schemas.credit_note_to_api` gives it) as PDF bytes."""
    currency = note["currency"]
    pdf = _Page(note["issued_at"], note["number"])
    _header(
        pdf,
        "Credit note",
        note["number"],
        [("Issued", _date(note["issued_at"])), ("Corrects", f"{note['invoice_number']}")],
    )
    _parties(pdf, note["seller"], note["buyer"])
    description = f"Refund, invoice {note['invoice_number']} of {_date(note['invoice_issued_at'])}"
    credited = money(-note["price_amount"], currency)
    _table(pdf, [(description, "", "1", credited, credited)])
    _totals(
        pdf,
        [
            ("Price credited (before tax)", money(-note["price_amount"], currency), False),
            (f"Tax credited ({_rate(note['tax_rate_bps'])})", money(-note["tax_amount"], currency), False),
            (f"Total credited ({currency.upper()})", money(-note["amount"], currency), True),
        ],
    )
    _footer(pdf, [f"Refund {note['refund_id']}. Amounts in {currency.upper()}."])
    return bytes(pdf.output())
