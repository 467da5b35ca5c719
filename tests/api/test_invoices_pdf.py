"""I1/I2: the PDF renderer on its own: money for humans, text it cannot print, every block of a real invoice and
of a credit note present (pdftotext), a page rendered (pdftoppm), the same document giving the same bytes."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from app.formatting import MINOR_UNIT_DIGITS
from app.invoices.pdf import money, printable, render_credit_note, render_invoice

BENCH = Path(__file__).resolve().parents[2] / "bench" / "pdf.py"
_spec = importlib.util.spec_from_file_location("bench_pdf", BENCH)
assert _spec is not None and _spec.loader is not None
samples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(samples)  # the benchmark's sample documents

needs_poppler = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils not installed")


@pytest.mark.parametrize(
    "amount, currency, shown",
    [
        (123456, "usd", "$1,234.56"),
        (5, "eur", "€0.05"),
        (-1000, "gbp", "-£10.00"),
        (1000, "jpy", "¥1,000"),
        (1250, "chf", "CHF 12.50"),
        (1234, "kwd", "KWD 1.234"),
    ],
)
def test_I1_money_for_humans(amount: int, currency: str, shown: str) -> None:
    assert money(amount, currency) == shown


def test_I1_text_outside_the_font_is_printed_as_near_as_it_can() -> None:
    assert printable("Zoë Müller, Straße") == "Zoë Müller, Straße"
    assert printable("Łódź, Dvořák") == "Lódz, Dvorák"  # ó and á are in Windows-1252; Ł, ź and ř are not
    assert printable("東京") == "??"
    assert printable(None) == ""


def _text(body: bytes, tmp_path: Path) -> str:
    path = tmp_path / "doc.pdf"
    path.write_bytes(body)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True).stdout


@needs_poppler
def test_I1_an_invoice_shows_every_block(tmp_path: Path) -> None:
    body = render_invoice(samples.INVOICE)
    assert body == render_invoice(samples.INVOICE)  # deterministic
    words = _text(body, tmp_path)
    for expected in (
        "Invoice",
        "INV-2031-000042",
        "Issued: 1 Mar 2031",
        "Date of supply: 1 Mar 2031 - 1 Apr 2031",
        "Acme Billing GmbH",
        "10117 Berlin",
        "Zoë Lukasiewicz",
        "31-147 Kraków",
        "Pro (monthly subscription)",
        "€1,234.56",
        "Tax (23%)",
        "€283.95",
        "Account credit applied",
        "-€10.00",
        "Total charged (EUR)",
        "€1,508.51",
    ):
        assert expected in words, expected
    simplified = render_invoice({**samples.INVOICE, "kind": "simplified", "tax_note": "Reverse charge"})
    words = _text(simplified, tmp_path)
    assert "Simplified invoice" in words and "Reverse charge" in words


@needs_poppler
def test_I2_a_credit_note_names_its_invoice_and_the_split(tmp_path: Path) -> None:
    words = _text(render_credit_note(samples.CREDIT_NOTE), tmp_path)
    for expected in ("Credit note", "CN-2031-000007", "INV-2031-000042", "-€40.65", "-€9.35", "-€50.00"):
        assert expected in words, expected


@needs_poppler
def test_I1_a_page_renders_to_an_image(tmp_path: Path) -> None:
    (tmp_path / "doc.pdf").write_bytes(render_invoice(samples.INVOICE))
    subprocess.run(
        ["pdftoppm", "-r", "50", "-png", "-singlefile", str(tmp_path / "doc.pdf"), str(tmp_path / "page")], check=True
    )
    png = (tmp_path / "page.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (414, 585)  # A4 at 50 dpi: one page


@pytest.mark.parametrize("currency", sorted(MINOR_UNIT_DIGITS))
def test_I1_the_pdf_shows_amounts_with_the_currencys_own_decimals(currency):
    # the PDF and the receipt read the same ISO 4217 table: 5000 minor units of XOF are 5000, of JOD 5.000
    digits = MINOR_UNIT_DIGITS[currency]
    shown = money(5000, currency)
    assert shown.endswith("5,000" if digits == 0 else f"{5000 // 10**digits:,}.{5000 % 10**digits:0{digits}d}")
