"""Customers: creation with validated billing details (P1), reading, and correction (D2) and the marketing
choice (D4) through PATCH."""

from __future__ import annotations

import pytest

from tests.api import shared
from tests.conftest import START, customer_headers, make_customer, ops_headers

client = shared.client  # fixtures: one app per module, see tests/api/shared.py
module_client = shared.module_client

PROBLEM_JSON = "application/problem+json"
VALID = {"email": "ada@example.com", "name": "Ada Lovelace", "country": "GB"}


def refused(response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in {e["field"] for e in body["errors"]}, body


def create(client, sub: str, **fields):
    return client.post("/v1/customers", json={**VALID, **fields}, headers=customer_headers(sub))


def get(client, customer_id: str, headers: dict | None = None):
    return client.get(f"/v1/customers/{customer_id}", headers=headers or ops_headers())


# --- create (P1) ------------------------------------------------------------------------------------------------


def test_P1_customer_token_creates_its_own_customer(client) -> None:
    response = create(client, "user-1")
    assert response.status_code == 201, response.text
    customer = response.json()
    assert customer["external_id"] == "user-1"
    assert {k: customer[k] for k in VALID} == VALID
    assert customer["marketing_opt_out"] is False
    assert customer["status"] == "active"
    assert customer["created_at"] == START
    assert isinstance(customer["id"], str) and customer["id"]
    assert get(client, customer["id"], customer_headers("user-1")).json() == customer


def test_P1_customer_token_may_name_its_own_sub_as_external_id(client) -> None:
    response = create(client, "user-1", external_id="user-1")
    assert response.status_code == 201, response.text
    assert response.json()["external_id"] == "user-1"


def test_P1_customer_token_cannot_create_a_customer_for_another_sub(client) -> None:
    refused(create(client, "user-1", external_id="user-2"), "external_id")
    # nothing was stored under either id
    assert make_customer(client, "user-1")["external_id"] == "user-1"
    assert make_customer(client, "user-2")["external_id"] == "user-2"


def test_P1_ops_create_a_customer_with_the_external_id_of_the_body(client) -> None:
    response = client.post("/v1/customers", json={**VALID, "external_id": "user-9"}, headers=ops_headers())
    assert response.status_code == 201, response.text
    customer = response.json()
    assert customer["external_id"] == "user-9"
    # the customer so created is the one that user-9's token reaches
    assert get(client, customer["id"], customer_headers("user-9")).json() == customer
    assert create(client, "user-9").json()["code"] == "customer_exists"


def test_P1_ops_must_give_the_external_id(client) -> None:
    refused(client.post("/v1/customers", json=VALID, headers=ops_headers()), "external_id")
    refused(client.post("/v1/customers", json={**VALID, "external_id": ""}, headers=ops_headers()), "external_id")
    # nothing stored under the staff member's own sub either
    assert make_customer(client, "staff-1")["external_id"] == "staff-1"


@pytest.mark.parametrize(
    "email",
    [
        "not-an-email",
        "ada@",
        "@example.com",
        "",
        "   ",
        "ada lovelace@example.com",
        "ada@@example.com",
        "ada@example",
        None,
        42,
    ],
)
def test_P1_invalid_email_is_refused_and_nothing_stored(client, email) -> None:
    refused(create(client, "user-1", email=email), "email")
    assert make_customer(client, "user-1")["email"] == "user-1@example.com"


@pytest.mark.parametrize(
    "name",
    ["", "   ", "\t\n", "Ada\x00Lovelace", "x" * 201, None],
    ids=["empty", "spaces", "whitespace", "control", "too_long", "null"],
)
def test_P1_empty_or_invalid_name_is_refused_and_nothing_stored(client, name) -> None:
    refused(create(client, "user-1", name=name), "name")
    assert make_customer(client, "user-1")["name"] == "Name user-1"


@pytest.mark.parametrize("country", ["us", "XX", "USA", "", "U", "Us", "ZZ", None, 1])
def test_P1_country_must_be_an_upper_case_iso_code(client, country) -> None:
    refused(create(client, "user-1", country=country), "country")
    assert make_customer(client, "user-1", country="DE")["country"] == "DE"


def test_P1_every_invalid_detail_is_reported_at_once(client) -> None:
    response = create(client, "user-1", email="nope", name=" ", country="usa")
    for field in ("email", "name", "country"):
        refused(response, field)


def test_P1_details_are_stored_trimmed(client) -> None:
    response = create(client, "user-1", email="  ada@example.com ", name="  Ada Lovelace  ")
    assert response.status_code == 201, response.text
    assert (response.json()["email"], response.json()["name"]) == ("ada@example.com", "Ada Lovelace")


def test_P1_valid_country_codes_are_accepted(client) -> None:
    for i, country in enumerate(["US", "DE", "JP", "BR", "ZA"]):
        assert make_customer(client, f"user-{i}", country=country)["country"] == country


def test_a_second_customer_for_the_same_sub_is_409(client) -> None:
    first = make_customer(client, "user-1")
    response = create(client, "user-1", email="other@example.com", name="Someone Else")
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert response.json()["code"] == "customer_exists"
    assert get(client, first["id"]).json() == first


def test_ops_cannot_reuse_an_external_id_either(client) -> None:
    make_customer(client, "user-1")
    response = client.post("/v1/customers", json={**VALID, "external_id": "user-1"}, headers=ops_headers())
    assert response.status_code == 409 and response.json()["code"] == "customer_exists"


def test_several_customers_may_share_an_email(client) -> None:
    a = make_customer(client, "user-a", email="family@example.com")
    b = make_customer(client, "user-b", email="family@example.com")
    assert a["id"] != b["id"]
    assert a["email"] == b["email"] == "family@example.com"


# --- read -------------------------------------------------------------------------------------------------------


def test_a_customer_reads_its_own_record(client) -> None:
    customer = make_customer(client, "user-1")
    response = get(client, customer["id"], customer_headers("user-1"))
    assert response.status_code == 200
    assert response.json() == customer


def test_a_customer_cannot_read_another_customers_record(client) -> None:
    customer = make_customer(client, "user-1")
    make_customer(client, "user-2")
    response = get(client, customer["id"], customer_headers("user-2"))
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert "user-1" not in response.text and customer["email"] not in response.text


def test_ops_read_any_customer(client) -> None:
    customer = make_customer(client, "user-1")
    assert get(client, customer["id"]).json() == customer


def test_an_unknown_customer_is_404(client) -> None:
    response = get(client, "cus_doesnotexist")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


# --- correct (D2) and the marketing choice (D4) -----------------------------------------------------------------


def patch(client, customer_id: str, body: dict, headers: dict | None = None):
    return client.patch(f"/v1/customers/{customer_id}", json=body, headers=headers or customer_headers("user-1"))


def test_D2_a_customer_corrects_name_email_and_country(client) -> None:
    customer = make_customer(client, "user-1")
    response = patch(client, customer["id"], {"name": "Ada King", "email": "ada.king@example.com", "country": "FR"})
    assert response.status_code == 200, response.text
    expected = {**customer, "name": "Ada King", "email": "ada.king@example.com", "country": "FR"}
    assert response.json() == expected
    assert get(client, customer["id"]).json() == expected


def test_D2_fields_left_out_stay_as_they_are(client) -> None:
    customer = make_customer(client, "user-1")
    response = patch(client, customer["id"], {"country": "IT"})
    assert response.json() == {**customer, "country": "IT"}
    assert patch(client, customer["id"], {}).json() == {**customer, "country": "IT"}


def test_D4_a_customer_opts_out_of_marketing_and_back_in(client) -> None:
    customer = make_customer(client, "user-1")
    assert patch(client, customer["id"], {"marketing_opt_out": True}).json() == {**customer, "marketing_opt_out": True}
    assert get(client, customer["id"]).json()["marketing_opt_out"] is True
    assert patch(client, customer["id"], {"marketing_opt_out": False}).json() == customer


def test_D2_ops_correct_any_customer(client) -> None:
    customer = make_customer(client, "user-1")
    response = patch(client, customer["id"], {"name": "Corrected By Staff"}, ops_headers())
    assert response.status_code == 200
    assert get(client, customer["id"]).json()["name"] == "Corrected By Staff"


@pytest.mark.parametrize("field", ["email", "name", "country", "marketing_opt_out"])
def test_D2_D4_an_explicit_null_is_refused_and_changes_nothing(client, field: str) -> None:
    customer = make_customer(client, "user-1")
    refused(patch(client, customer["id"], {field: None}), field)
    assert get(client, customer["id"]).json() == customer


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email"},
        {"name": "   "},
        {"name": ""},
        {"country": "us"},
        {"country": "XX"},
        {"country": "USA"},
        {"marketing_opt_out": "maybe"},
    ],
    ids=["email", "blank_name", "empty_name", "lower_country", "unknown_country", "alpha3_country", "opt_out"],
)
def test_D2_D4_invalid_values_are_refused_and_change_nothing(client, body: dict) -> None:
    customer = make_customer(client, "user-1")
    refused(patch(client, customer["id"], body), next(iter(body)))
    assert get(client, customer["id"]).json() == customer


def test_D2_one_invalid_field_refuses_the_whole_correction(client) -> None:
    customer = make_customer(client, "user-1")
    refused(patch(client, customer["id"], {"name": "Valid New Name", "country": "xx"}), "country")
    assert get(client, customer["id"]).json() == customer


def test_D2_another_customer_cannot_correct_the_record(client) -> None:
    customer = make_customer(client, "user-1")
    make_customer(client, "user-2")
    response = patch(client, customer["id"], {"name": "Hijacked"}, customer_headers("user-2"))
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert get(client, customer["id"]).json() == customer


def test_D2_correcting_an_unknown_customer_is_404(client) -> None:
    response = patch(client, "cus_doesnotexist", {"name": "Nobody"}, ops_headers())
    assert response.status_code == 404 and response.json()["code"] == "not_found"
