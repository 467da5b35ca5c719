"""Free text that staff write (refund, credit, suspension and termination reasons; the subject and body of a
message to a customer) refuses control characters, as names do: terminal escapes would reach logs and consoles,
and a line break in a subject would inject e-mail headers. The refusal is a 422 `validation_error` problem naming
the field, and nothing is stored. Ordinary spaces and any other unicode are accepted and kept exactly; a message
body may have line feeds and tabs."""

from __future__ import annotations

import pytest

from tests.api import shared
from tests.conftest import customer_headers, make_customer, make_plan, ops_headers

client = shared.client  # fixtures: one app per module, see tests/api/shared.py
module_client = shared.module_client

PROBLEM_JSON = "application/problem+json"
UNICODE_REASON = "Remboursement geste commercial — client fidèle ✓"
CONTROL = {  # each inside the text (leading and trailing whitespace is trimmed from reasons, as from names)
    "bell": "goodwill\x07 gesture",
    "ansi-escape": "\x1b[31mgoodwill\x1b[0m",
    "crlf-header-injection": "Hello\r\nBcc: everyone@example.com",
    "lf": "first line\nsecond line",
    "cr": "first\rsecond",
    "tab": "good\twill",
    "del": "good\x7fwill",
    "c1-nel": "good\x85will",
    "c1-csi": "good\x9b31mwill",
    "line-separator": "good\u2028will",
    "unit-separator": "good\x1fwill",
}


@pytest.fixture
def world(client) -> dict:
    plan = make_plan(client)
    alice = make_customer(client, "alice")
    sub = client.post(
        "/v1/subscriptions",
        json={"customer_id": alice["id"], "plan": plan["code"], "payment_method": "pm_card_visa"},
        headers=customer_headers("alice"),
    )
    assert sub.status_code == 201, sub.text
    [payment] = client.get(f"/v1/customers/{alice['id']}/payments", headers=ops_headers()).json()["data"]
    return {"customer": alice, "payment": payment}


def stored(client, w: dict) -> dict:
    """Everything a reason or a message could have changed: the payment and its refunds, the customer, its credits
    and notices, and the audit log."""
    ops, customer, payment = ops_headers(), w["customer"]["id"], w["payment"]["id"]
    reads = {
        "payment": f"/v1/payments/{payment}",
        "refunds": f"/v1/payments/{payment}/refunds",
        "customer": f"/v1/customers/{customer}",
        "credits": f"/v1/customers/{customer}/credits",
        "notices": f"/v1/customers/{customer}/notices",
        "audit": "/v1/audit-events?limit=100",
    }
    responses = {name: client.get(path, headers=ops) for name, path in reads.items()}
    assert all(r.status_code == 200 for r in responses.values()), {n: r.text for n, r in responses.items()}
    return {name: r.json() for name, r in responses.items()}


def assert_refused(response, field: str, kind: str = "") -> None:
    assert response.status_code == 422, (kind, response.text)
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert body["code"] == "validation_error" and body["status"] == 422, body
    [error] = body["errors"]
    assert error["field"] == field and error["location"] == "body", (kind, error)
    assert "control characters" in error["message"], (kind, error)


def writes(w: dict, value: str) -> dict[str, tuple[str, dict, str]]:
    """Each write with a free-text field: (path, body with `value` in it, the refused field)."""
    customer, payment = w["customer"]["id"], w["payment"]["id"]
    message = {"category": "service", "subject": "Planned maintenance", "body": "We will be down on Sunday."}
    return {
        "refund": (f"/v1/payments/{payment}/refunds", {"amount": 100, "reason": value}, "reason"),
        "credit": (f"/v1/customers/{customer}/credits", {"amount": 100, "currency": "usd", "reason": value}, "reason"),
        "suspend": (f"/v1/customers/{customer}/suspend", {"reason": value}, "reason"),
        "terminate": (f"/v1/customers/{customer}/terminate", {"reason": value}, "reason"),
        "message-subject": (f"/v1/customers/{customer}/messages", {**message, "subject": value}, "subject"),
    }


WRITES = ["refund", "credit", "suspend", "terminate", "message-subject"]


@pytest.mark.parametrize("write", WRITES)
def test_control_characters_in_a_reason_or_subject_are_refused_and_nothing_is_stored(client, world, write) -> None:
    before = stored(client, world)
    for kind, value in CONTROL.items():
        path, body, field = writes(world, value)[write]
        response = client.post(path, json=body, headers=ops_headers())
        assert_refused(response, field, kind)
    after = stored(client, world)
    assert after == before, "a refused request changed something"
    assert after["payment"]["refunded_amount"] == 0 and after["refunds"]["data"] == []
    assert after["customer"]["status"] == "active"


@pytest.mark.parametrize(
    "value",
    ["Hello\x07", "line\r\nbreak", "a\x1b[2Jb", "a\x0bb", "a\x0cb", "a\x85b", "a\x7fb"],
    ids=["bell", "crlf", "ansi-escape", "vertical-tab", "form-feed", "c1-nel", "del"],
)
def test_a_message_body_refuses_control_characters_but_line_feeds_and_tabs(client, world, value: str) -> None:
    before = stored(client, world)
    path = f"/v1/customers/{world['customer']['id']}/messages"
    response = client.post(
        path, json={"category": "service", "subject": "Maintenance", "body": value}, headers=ops_headers()
    )
    assert_refused(response, "body")
    assert stored(client, world) == before


def test_a_message_body_keeps_its_lines_and_tabs(client, world) -> None:
    body = "Bonjour,\n\n\tNous serons indisponibles dimanche — merci ✓\nL'équipe"
    response = client.post(
        f"/v1/customers/{world['customer']['id']}/messages",
        headers=ops_headers(),
        json={"category": "service", "subject": "Maintenance prévue — dimanche ✓", "body": body},
    )
    assert response.status_code == 201, response.text
    assert response.json()["body"] == body and response.json()["subject"] == "Maintenance prévue — dimanche ✓"


def test_an_ordinary_unicode_refund_reason_is_accepted_and_kept_exactly(client, world) -> None:
    payment = world["payment"]
    response = client.post(
        f"/v1/payments/{payment['id']}/refunds", json={"amount": 100, "reason": UNICODE_REASON}, headers=ops_headers()
    )
    assert response.status_code == 201, response.text
    assert response.json()["reason"] == UNICODE_REASON
    after = stored(client, world)
    assert after["payment"]["refunded_amount"] == 100
    assert [r["reason"] for r in after["refunds"]["data"]] == [UNICODE_REASON]
    assert UNICODE_REASON in [event.get("reason") for event in after["audit"]["data"]]


@pytest.mark.parametrize("write", ["credit", "suspend", "terminate", "message-subject"])
def test_ordinary_unicode_reasons_and_subjects_are_accepted(client, world, write) -> None:
    path, body, field = writes(world, UNICODE_REASON)[write]
    response = client.post(path, json=body, headers=ops_headers())
    assert response.status_code in (200, 201), response.text
    if field == "subject":
        assert response.json()["subject"] == UNICODE_REASON
    else:
        assert UNICODE_REASON in [event.get("reason") for event in stored(client, world)["audit"]["data"]]


@pytest.mark.parametrize("kind", sorted(CONTROL))
def test_a_plan_name_or_an_external_id_with_a_control_character_is_refused_and_not_stored(client, kind) -> None:
    """A plan's name goes into notices' subjects (receipts, reminders); an external id into logs and the console."""
    value = CONTROL[kind]
    plan = client.post(
        "/v1/plans",
        headers=ops_headers(),
        json={
            "code": "pro",
            "name": value,
            "tier": "subscription",
            "interval": "month",
            "amount": 2000,
            "currency": "usd",
        },
    )
    assert_refused(plan, "name", kind)
    assert client.get("/v1/plans/pro", headers=ops_headers()).status_code == 404
    audit_before = client.get("/v1/audit-events?limit=100", headers=ops_headers()).json()
    customer = client.post(
        "/v1/customers",
        headers=ops_headers(),
        json={"email": "bob@example.com", "name": "Bob", "country": "US", "external_id": value},
    )
    assert_refused(customer, "external_id", kind)
    assert client.get("/v1/audit-events?limit=100", headers=ops_headers()).json() == audit_before  # nobody created
