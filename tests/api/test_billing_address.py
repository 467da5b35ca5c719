"""I1/P1/D1/D2/D3: a customer's optional billing address and tax id: validated on entry, correctable, exported,
printed on their invoices (a full invoice once the address is known); a business (a tax id) gives its address
before buying (422 `billing_address_required`); erasure empties them on the customer and leaves the documents as
issued (I3)."""

from __future__ import annotations

import pytest

from tests.api.test_subscriptions import payments_of, purchase
from tests.conftest import customer_headers, make_plan, ops_headers

ADDRESS = {"line1": "Hauptstraße 1", "city": "Berlin", "postal_code": "10115"}
SHOWN = {**ADDRESS, "line2": None, "region": None}


def create(client, sub: str, **fields):
    body = {"email": f"{sub}@example.com", "name": f"Name {sub}", "country": "DE", **fields}
    return client.post("/v1/customers", json=body, headers=customer_headers(sub))


def test_P1_I1_address_and_tax_id_are_validated_and_shown(client) -> None:
    made = create(client, "muster", address=ADDRESS, tax_id="de 123.456-789")
    assert made.status_code == 201, made.text
    assert (made.json()["address"], made.json()["tax_id"]) == (SHOWN, "DE123456789")  # the normal form
    plain = create(client, "plain")
    assert (plain.json()["address"], plain.json()["tax_id"]) == (None, None)


@pytest.mark.parametrize(
    "fields",
    [
        {"tax_id": "hello"},
        {"tax_id": "12"},
        {"tax_id": "DE12345678901234567"},
        {"address": {"line1": "Hauptstraße 1"}},  # no city
        {"address": {"line1": " ", "city": "Berlin"}},
        {"address": {"line1": "a\nb", "city": "Berlin"}},
        {"address": {"line1": "x", "city": "Berlin", "country": "DE"}},  # unknown field
    ],
)
def test_P1_bad_billing_details_are_refused_and_nothing_stored(client, fields) -> None:
    response = create(client, "bad", **fields)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert create(client, "bad").status_code == 201  # nothing was stored by the refused request


def test_D2_address_and_tax_id_are_corrected_and_removed(client) -> None:
    customer = create(client, "muster", tax_id="DE123456789").json()
    path = f"/v1/customers/{customer['id']}"
    moved = client.patch(path, json={"address": {**ADDRESS, "line2": "Hof 3"}}, headers=customer_headers("muster"))
    assert moved.status_code == 200, moved.text
    assert moved.json()["address"] == {**SHOWN, "line2": "Hof 3"}
    bad = client.patch(path, json={"tax_id": "nope"}, headers=customer_headers("muster"))
    assert bad.status_code == 422
    cleared = client.patch(path, json={"tax_id": None}, headers=customer_headers("muster"))
    assert cleared.status_code == 200 and cleared.json()["tax_id"] is None
    assert cleared.json()["address"] == {**SHOWN, "line2": "Hof 3"}


def test_I1_a_business_without_an_address_cannot_buy_and_with_one_gets_a_full_invoice(client) -> None:
    make_plan(client, amount=2000)
    customer = create(client, "muster", tax_id="DE123456789").json()
    refused = purchase(client, customer, "pro-monthly", "pm_card_visa")
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "billing_address_required"
    assert payments_of(client, customer) == []
    fixed = client.patch(
        f"/v1/customers/{customer['id']}", json={"address": ADDRESS}, headers=customer_headers("muster")
    )
    assert fixed.status_code == 200, fixed.text
    assert purchase(client, customer, "pro-monthly", "pm_card_visa").status_code == 201
    [payment] = payments_of(client, customer)
    invoice = client.get(f"/v1/invoices/{payment['invoice_id']}", headers=customer_headers("muster")).json()
    assert invoice["kind"] == "full"
    assert invoice["buyer"] == {"name": "Name muster", "country": "DE", "address": SHOWN, "tax_id": "DE123456789"}


def test_D1_D3_I3_export_has_the_documents_and_erasure_leaves_them_as_issued(client) -> None:
    make_plan(client, amount=2000)
    customer = create(client, "muster", address=ADDRESS, tax_id="DE123456789").json()
    assert purchase(client, customer, "pro-monthly", "pm_card_visa").status_code == 201
    [payment] = payments_of(client, customer)
    refund = client.post(
        f"/v1/payments/{payment['id']}/refunds",
        json={"amount": 500, "reason": "goodwill"},
        headers={**ops_headers(), "Idempotency-Key": "r1"},
    ).json()
    exported = client.get(f"/v1/customers/{customer['id']}/export", headers=customer_headers("muster")).json()
    assert (exported["customer"]["address"], exported["customer"]["tax_id"]) == (SHOWN, "DE123456789")
    invoice = client.get(f"/v1/invoices/{payment['invoice_id']}", headers=ops_headers()).json()
    note = client.get(f"/v1/credit-notes/{refund['credit_note_id']}", headers=ops_headers()).json()
    assert exported["invoices"] == [invoice] and exported["credit_notes"] == [note]
    pdf = client.get(f"/v1/invoices/{invoice['id']}/pdf", headers=ops_headers()).content
    erased = client.delete(f"/v1/customers/{customer['id']}", headers=customer_headers("muster"))
    assert erased.status_code == 200, erased.text
    assert (erased.json()["address"], erased.json()["tax_id"]) == (None, None)
    assert client.get(f"/v1/invoices/{invoice['id']}", headers=ops_headers()).json() == invoice
    assert client.get(f"/v1/credit-notes/{note['id']}", headers=ops_headers()).json() == note
    assert client.get(f"/v1/invoices/{invoice['id']}/pdf", headers=ops_headers()).content == pdf
