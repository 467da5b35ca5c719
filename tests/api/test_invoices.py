"""I1-I3: invoices and credit notes, issued through app/invoices/service.py for payments made as before invoices
existed (the `client` here turns the issuing at payment off: tests/api/test_invoices_issuance.py tests that), read
over HTTP as api.md fixes them, their PDFs checked by extracting the text (poppler's pdftotext) and by
rendering a page (pdftoppm)."""

from __future__ import annotations

import datetime as _dt
import shutil
import subprocess
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.invoices import service
from app.invoices.seller import Seller
from app.models import credit_notes, invoices
from policies.document import VERSIONS_DIR
from tests.api.test_subscriptions import buy
from tests.conftest import START, customer_headers, make_customer, make_plan, make_settings, ops_headers

SELLER = Seller(
    name="Acme Billing GmbH",
    address="Friedrichstraße 1\n10117 Berlin\nGermany",
    tax_id="DE123456789",
    timezone=ZoneInfo("UTC"),
)
NOW = _dt.datetime.fromisoformat(START.replace("Z", "+00:00"))
INVOICE_FIELDS = {
    "id", "number", "kind", "customer_id", "subscription_id", "payment_id", "issued_at", "currency", "seller",
    "buyer", "lines", "subtotal", "tax_rate_bps", "tax_amount", "tax_note", "credit_applied", "total",
}  # fmt: skip
CREDIT_NOTE_FIELDS = {
    "id", "number", "invoice_id", "invoice_number", "invoice_issued_at", "refund_id", "customer_id", "issued_at",
    "currency", "seller", "buyer", "tax_rate_bps", "amount", "price_amount", "tax_amount",
}  # fmt: skip
needs_poppler = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    """The shipped policy with a German rate (P2), so invoices carry tax."""
    folder = tmp_path_factory.mktemp("policy")
    for source in VERSIONS_DIR.glob("*.toml"):
        body = source.read_text(encoding="utf-8")
        (folder / source.name).write_text(body.replace("[tax_rates]", '[tax_rates]\nDE = "0.19"', 1))
    return folder


@pytest.fixture(scope="module")
def module_client(database_url: str, policy_dir: Path):
    from app.main import create_app

    with TestClient(create_app(make_settings(database_url, policy_dir=policy_dir)), raise_server_exceptions=False) as c:
        yield c


async def _not_issued(*args, **kwargs) -> dict:
    return {}


def payments_before_invoices(monkeypatch) -> None:
    """Payments succeed without their invoice, as before invoices existed: the documents are issued by the test."""
    monkeypatch.setattr("app.subscriptions.charging.invoice_payments", _not_issued)


@pytest.fixture
def client(module_client, clean_db: str, monkeypatch):
    payments_before_invoices(monkeypatch)
    response = module_client.post("/v1/sandbox/clock", json={"now": START}, headers=ops_headers())
    assert response.status_code == 200, response.text
    return module_client


def _in_transaction(client, operation, *args, **kwargs):
    ctx = client.app.state.ctx

    async def run():
        async with ctx.db.transaction() as conn:
            return await operation(conn, *args, **kwargs)

    return client.portal.call(run)


def issue_invoices(client, payment_ids, now=NOW, **kwargs) -> list[dict]:
    ctx = client.app.state.ctx
    return _in_transaction(client, service.issue_invoices, payment_ids, now, SELLER, ctx.policies, **kwargs)


def issue_credit_note(client, refund_id: str, now=NOW) -> dict | None:
    return _in_transaction(client, service.issue_credit_note, refund_id, now, SELLER)


def payments_of(client, customer: dict) -> list[dict]:
    response = client.get(f"/v1/customers/{customer['id']}/payments", headers=ops_headers())
    assert response.status_code == 200, response.text
    return response.json()["data"]


def paid(client, sub: str, country: str = "DE") -> tuple[dict, dict]:
    customer = make_customer(client, sub, country=country)
    buy(client, customer)
    return customer, payments_of(client, customer)[0]


def refund(client, payment_id: str, amount: int, key: str) -> dict:
    response = client.post(
        f"/v1/payments/{payment_id}/refunds",
        json={"amount": amount, "reason": "goodwill"},
        headers={**ops_headers(), "Idempotency-Key": key},
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "succeeded"
    return response.json()


def pdf_text(body: bytes, tmp_path: Path) -> str:
    path = tmp_path / "document.pdf"
    path.write_bytes(body)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True).stdout


def test_I1_an_invoice_of_a_purchase_as_the_contract_shows_it(client) -> None:
    make_plan(client, "pro-monthly", amount=2000, currency="eur")
    customer, payment = paid(client, "alice")
    (issued,) = issue_invoices(client, [payment["id"]])
    response = client.get(f"/v1/invoices/{issued['id']}", headers=customer_headers("alice"))
    assert response.status_code == 200, response.text
    invoice = response.json()
    assert set(invoice) >= INVOICE_FIELDS
    assert invoice["number"] == "INV-2030-000001"
    assert invoice["kind"] == "simplified"  # no billing address known
    assert (invoice["customer_id"], invoice["payment_id"]) == (customer["id"], payment["id"])
    assert invoice["subscription_id"] == payment["subscription_id"]
    assert (invoice["subtotal"], invoice["tax_rate_bps"], invoice["tax_amount"]) == (2000, 1900, 380)
    assert (invoice["credit_applied"], invoice["total"], invoice["tax_note"]) == (0, 2380, None)
    assert invoice["total"] == payment["amount"]
    assert invoice["currency"] == "eur"
    assert invoice["seller"] == {"name": SELLER.name, "address": SELLER.address, "tax_id": SELLER.tax_id}
    assert invoice["buyer"] == {"name": "Name alice", "country": "DE", "address": None, "tax_id": None}
    assert "alice@example.com" not in response.text  # I1: never the email
    (line,) = invoice["lines"]
    assert (line["plan"], line["unit_amount"], line["amount"]) == ("pro-monthly", 2000, 2000)
    assert (line["period_start"], line["period_end"]) == (payment["period_start"], payment["period_end"])
    assert invoice["issued_at"] == START


def test_I1_numbers_are_consecutive_per_year_and_each_payment_gets_exactly_one(client) -> None:
    make_plan(client, "pro-monthly", amount=1000, currency="eur")
    payments = [paid(client, f"c{index}")[1]["id"] for index in range(4)]
    first = issue_invoices(client, payments[:3])
    assert [invoice["number"] for invoice in first] == [f"INV-2030-00000{n}" for n in (1, 2, 3)]
    again = issue_invoices(client, payments)  # the three invoiced already are skipped
    assert [invoice["number"] for invoice in again] == ["INV-2030-000004"]
    assert issue_invoices(client, payments) == []
    next_year = issue_invoices(client, [paid(client, "late")[1]["id"]], now=_dt.datetime(2031, 1, 1, tzinfo=_dt.UTC))
    assert next_year[0]["number"] == "INV-2031-000001"  # I1: a sequence per calendar year
    listed = client.get("/v1/customers/" + first[0]["customer_id"] + "/invoices", headers=ops_headers()).json()
    assert [invoice["id"] for invoice in listed["data"]] == [first[0]["id"]] and listed["has_more"] is False


@needs_poppler
def test_I1_the_pdf_is_issued_once_and_served_byte_identical(client, tmp_path: Path) -> None:
    make_plan(client, "pro-monthly", amount=123456, currency="eur")
    _, payment = paid(client, "alice")
    (invoice,) = issue_invoices(client, [payment["id"]])
    first = client.get(f"/v1/invoices/{invoice['id']}/pdf", headers=customer_headers("alice"))
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "application/pdf"
    assert first.content.startswith(b"%PDF-")
    assert client.get(f"/v1/invoices/{invoice['id']}/pdf", headers=ops_headers()).content == first.content
    words = pdf_text(first.content, tmp_path)
    for expected in ("INV-2030-000001", "Acme Billing GmbH", "Friedrichstraße 1", "DE123456789", "Name alice"):
        assert expected in words
    for expected in ("Tax (19%)", "€1,234.56", "€234.57", "€1,469.13", "Total charged (EUR)", "15 Jan 2030"):
        assert expected in words
    (tmp_path / "document.pdf").write_bytes(first.content)
    subprocess.run(
        ["pdftoppm", "-r", "40", "-png", "-singlefile", str(tmp_path / "document.pdf"), str(tmp_path / "page")],
        check=True,
    )
    png = (tmp_path / "page.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 2000


def test_I1_an_invoice_issued_without_its_pdf_gets_it_once_at_first_download(client) -> None:
    make_plan(client, "pro-monthly", amount=2000, currency="eur")
    _, payment = paid(client, "alice")
    (invoice,) = issue_invoices(client, [payment["id"]], render_pdf=False)
    first = client.get(f"/v1/invoices/{invoice['id']}/pdf", headers=customer_headers("alice")).content
    second = client.get(f"/v1/invoices/{invoice['id']}/pdf", headers=customer_headers("alice")).content
    assert first == second and first.startswith(b"%PDF-")

    async def stored(conn):
        return (await conn.execute(select(invoices.c.pdf).where(invoices.c.id == invoice["id"]))).scalar_one()

    assert _in_transaction(client, stored) == first


def test_I2_credit_notes_split_partial_refunds_and_credit_exactly_the_tax(client) -> None:
    make_plan(client, "pro-monthly", amount=1999, currency="eur")
    customer, payment = paid(client, "alice")  # 1999 + 380 tax = 2379
    (invoice,) = issue_invoices(client, [payment["id"]])
    notes = []
    for index, amount in enumerate((1000, 1000, 379)):
        made = refund(client, payment["id"], amount, f"refund-{index}")
        notes.append(issue_credit_note(client, made["id"]))
    assert [note["number"] for note in notes] == ["CN-2030-000001", "CN-2030-000002", "CN-2030-000003"]
    assert sum(note["tax_amount"] for note in notes) == invoice["tax_amount"] == 380
    assert sum(note["price_amount"] for note in notes) == invoice["subtotal"] == 1999
    assert [note["tax_amount"] for note in notes] == [160, 159, 61]  # 159.7, 319.5 (half up), 380 cumulative
    note = client.get(f"/v1/credit-notes/{notes[0]['id']}", headers=customer_headers("alice")).json()
    assert set(note) >= CREDIT_NOTE_FIELDS
    assert (note["invoice_id"], note["invoice_number"], note["invoice_issued_at"]) == (
        invoice["id"], invoice["number"], START,
    )  # fmt: skip
    assert (note["amount"], note["tax_rate_bps"], note["customer_id"]) == (1000, 1900, customer["id"])
    assert issue_credit_note(client, notes[0]["refund_id"]) == notes[0]  # one per refund
    listed = client.get(f"/v1/customers/{customer['id']}/credit-notes", headers=customer_headers("alice")).json()
    assert [n["number"] for n in listed["data"]] == ["CN-2030-000003", "CN-2030-000002", "CN-2030-000001"]
    body = client.get(f"/v1/credit-notes/{notes[0]['id']}/pdf", headers=ops_headers())
    assert body.status_code == 200 and body.headers["content-type"] == "application/pdf"


def test_I3_documents_are_their_customers_and_after_erasure_ops_only(client) -> None:
    make_plan(client, "pro-monthly", amount=2000, currency="eur")
    alice, payment = paid(client, "alice")
    make_customer(client, "bob")
    (invoice,) = issue_invoices(client, [payment["id"]])
    note = issue_credit_note(client, refund(client, payment["id"], 500, "r1")["id"])
    paths = [f"/v1/invoices/{invoice['id']}", f"/v1/invoices/{invoice['id']}/pdf"]
    paths += [f"/v1/credit-notes/{note['id']}", f"/v1/credit-notes/{note['id']}/pdf"]
    lists = [f"/v1/customers/{alice['id']}/invoices", f"/v1/customers/{alice['id']}/credit-notes"]
    for path in paths + lists:
        assert client.get(path, headers=customer_headers("bob")).status_code == 404, path
        assert client.get(path, headers=customer_headers("alice")).status_code == 200, path
        assert client.get(path).status_code == 401, path
    before = client.get(paths[0], headers=ops_headers()).json()
    pdf_before = client.get(paths[1], headers=ops_headers()).content
    erased = client.delete(f"/v1/customers/{alice['id']}", headers=customer_headers("alice"))
    assert erased.status_code == 200, erased.text
    for path in paths:
        assert client.get(path, headers=customer_headers("alice")).status_code == 404, path
        assert client.get(path, headers=ops_headers()).status_code == 200, path
    assert client.get(paths[0], headers=ops_headers()).json() == before  # I3: unchanged by erasure
    assert client.get(paths[1], headers=ops_headers()).content == pdf_before


def test_I3_postgresql_refuses_changing_an_issued_document(client, is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("the trigger is PostgreSQL's (as the audit log's)")
    make_plan(client, "pro-monthly", amount=2000, currency="eur")
    _, payment = paid(client, "alice")
    (rendered,) = issue_invoices(client, [payment["id"]])
    (bare,) = issue_invoices(client, [paid(client, "bob")[1]["id"]], render_pdf=False)
    note = issue_credit_note(client, refund(client, payment["id"], 500, "r1")["id"])

    async def attempt(conn, statement):
        await conn.execute(statement)

    for statement in (
        update(invoices).where(invoices.c.id == rendered["id"]).values(total=0),
        update(invoices).where(invoices.c.id == rendered["id"]).values(pdf=b"%PDF-other"),
        update(invoices).where(invoices.c.id == bare["id"]).values(pdf=b"%PDF-x", total=0),
        invoices.delete().where(invoices.c.id == rendered["id"]),
        credit_notes.delete().where(credit_notes.c.id == note["id"]),
        update(credit_notes).values(amount=1, price_amount=1, tax_amount=0),
    ):
        with pytest.raises(Exception, match="kept as issued"):
            _in_transaction(client, attempt, statement)
    # The one write allowed: the PDF stored once into an empty `pdf`, nothing else changed.
    _in_transaction(client, attempt, update(invoices).where(invoices.c.id == bare["id"]).values(pdf=b"%PDF-1"))
    assert client.get(f"/v1/invoices/{bare['id']}/pdf", headers=ops_headers()).content == b"%PDF-1"


def test_P2_I1_a_business_buyer_with_an_address_gets_a_full_reverse_charge_invoice(client) -> None:
    """Until customers carry a billing address and tax id (issue 17 item 1), the buyer's facts are given directly."""
    from app.invoices.repository import ChargeFacts

    charge = ChargeFacts(
        payment_id="pay_x",
        customer_id="cus_x",
        subscription_id="sub_x",
        period_start=NOW,
        period_end=NOW + _dt.timedelta(days=31),
        price_amount=2000,
        tax_amount=0,
        credit_applied=0,
        amount=2000,
        currency="eur",
        policy_version="2026-11-01",
        plan_code="pro-monthly",
        plan_name="Pro",
        interval="month",
        buyer_name="Muster GmbH",
        buyer_country="DE",
        buyer_address={"line1": "Hauptstraße 1", "city": "Berlin", "postal_code": "10115"},
        buyer_tax_id="DE999999999",
    )
    row = service._invoice_row(charge, "INV-2030-000009", NOW, SELLER, client.app.state.ctx.policies, True)
    assert (row["kind"], row["tax_rate_bps"], row["tax_note"], row["total"]) == ("full", 0, "Reverse charge", 2000)
    assert row["buyer"]["tax_id"] == "DE999999999" and row["pdf"].startswith(b"%PDF-")
