"""Personal data rights through HTTP: export (D1), correction (D2), erasure that keeps the books (D3), marketing
objection (D4), and no personal data in the logs."""

from __future__ import annotations

import logging

from tests.api.test_ops_actions import buy, payments_of, refund
from tests.api.test_trials import start_trial
from tests.conftest import customer_headers, make_customer, make_plan, move_clock, ops_headers, run_due

EMAIL = "Grace.Hopper@Example.com"
NAME = "Grace Hopper"


def _customer(client, sub: str = "grace") -> dict:  # noqa: ANN001
    response = client.post("/v1/customers", json={"email": EMAIL, "name": NAME, "country": "US"},
                           headers=customer_headers(sub))
    assert response.status_code == 201
    return response.json()


def test_D1_export_contains_everything_held(client):
    make_plan(client, amount=2000)
    grace = _customer(client)
    trial = start_trial(client, grace).json()
    sub = buy(client, grace)
    [payment] = payments_of(client, grace)
    refund(client, payment["id"], 100, "goodwill")
    client.post(f"/v1/customers/{grace['id']}/credits", json={"amount": 50, "currency": "usd", "reason": "sorry"},
                headers=ops_headers())
    run_due(client)
    export = client.get(f"/v1/customers/{grace['id']}/export", headers=customer_headers("grace"))
    assert export.status_code == 200
    doc = export.json()
    assert doc["schema_version"] == 1 and doc["object"] == "customer_export"
    assert doc["customer"]["email"] == EMAIL and doc["customer"]["name"] == NAME
    assert [t["id"] for t in doc["trials"]] == [trial["id"]] and doc["trials"][0]["status"] == "forfeited"
    assert [s["id"] for s in doc["subscriptions"]] == [sub["id"]]
    assert [p["id"] for p in doc["payments"]] == [payment["id"]]
    assert [r["amount"] for r in doc["refunds"]] == [100]
    assert [c["amount"] for c in doc["credits"]] == [50]
    assert {n["type"] for n in doc["notices"]} >= {"receipt"} and all(n["body"] for n in doc["notices"])
    assert {"customer.created", "trial.started", "refund.requested"} <= {e["action"] for e in doc["audit_events"]}
    # Customers get their own export only; ops get any.
    make_customer(client, "other")
    assert client.get(f"/v1/customers/{grace['id']}/export", headers=customer_headers("other")).status_code == 404
    assert client.get(f"/v1/customers/{grace['id']}/export", headers=ops_headers()).status_code == 200


def test_D2_correction_is_audited_without_the_values(client):
    grace = _customer(client)
    response = client.patch(f"/v1/customers/{grace['id']}", json={"email": "grace@navy.example", "name": "G. Hopper",
                            "country": "GB"}, headers=customer_headers("grace"))
    assert response.status_code == 200
    assert response.json()["email"] == "grace@navy.example" and response.json()["country"] == "GB"
    events = client.get(f"/v1/audit-events?customer_id={grace['id']}&action=customer.updated",
                        headers=ops_headers()).json()["data"]
    assert events[0]["data"] == {"fields": ["country", "email", "name"]}
    assert "navy" not in str(events) and "Hopper" not in str(events)


def test_D3_T5_erasure_keeps_the_books_and_the_trial_once_rule(client):
    make_plan(client, amount=2000)
    grace = _customer(client)
    start_trial(client, grace)
    # D2 then D3: every address the person ever used stays barred from a second trial.
    client.patch(f"/v1/customers/{grace['id']}", json={"email": "second@example.com"},
                 headers=customer_headers("grace"))
    sub = buy(client, grace)
    [payment] = payments_of(client, grace)
    erased = client.delete(f"/v1/customers/{grace['id']}", headers=customer_headers("grace"))
    assert erased.status_code == 200
    body = erased.json()
    assert body["status"] == "erased" and body["email"] is None and body["name"] is None
    assert body["external_id"] is None and body["country"] is None
    # Access ends at once; nothing refunded.
    ended = client.get(f"/v1/subscriptions/{sub['id']}", headers=ops_headers()).json()
    assert ended["status"] == "canceled" and ended["ended_reason"] == "erased"
    assert client.get(f"/v1/customers/{grace['id']}/access", headers=ops_headers()).json()["has_access"] is False
    kept = client.get(f"/v1/payments/{payment['id']}", headers=ops_headers()).json()
    assert kept["amount"] == 2000 and kept["refunded_amount"] == 0 and kept["tax_amount"] == 0
    # Nothing readable is left: notices and the audit log hold no name or e-mail, the token's id is pseudonymised.
    export = client.get(f"/v1/customers/{grace['id']}/export", headers=ops_headers()).json()
    text = str(export).lower()
    assert "grace" not in text and "hopper" not in text and "second@" not in text
    assert all(e["actor"] != "grace" for e in export["audit_events"])
    # Idempotent: erasing again changes nothing.
    again = client.delete(f"/v1/customers/{grace['id']}", headers=ops_headers())
    assert again.status_code == 200 and again.json() == body
    # T5 survives erasure: a new account with either old address is refused a trial.
    for sub_id, email in (("grace-new", EMAIL.upper()), ("grace-2", " second@example.com ")):
        fresh = make_customer(client, sub_id, email=email)
        assert start_trial(client, fresh).json()["code"] == "trial_not_eligible"
    # The erased person's token no longer reaches anything.
    assert client.get(f"/v1/customers/{grace['id']}", headers=customer_headers("grace")).status_code == 404


def test_D4_marketing_objection_service_notices_still_sent(client):
    make_plan(client)
    grace = _customer(client)
    opted = client.patch(f"/v1/customers/{grace['id']}", json={"marketing_opt_out": True},
                         headers=customer_headers("grace"))
    assert opted.json()["marketing_opt_out"] is True
    for category in ("marketing", "service"):
        response = client.post(f"/v1/customers/{grace['id']}/messages", json={
            "category": category, "subject": f"{category} news", "body": "Hello"}, headers=ops_headers())
        assert response.status_code == 201
    assert client.post(f"/v1/customers/{grace['id']}/messages", json={"category": "marketing", "subject": "x",
                       "body": "y"}, headers=customer_headers("grace")).status_code == 403
    trial = start_trial(client, grace).json()
    move_clock(client, trial["notice_at"])
    run_due(client)
    notices = client.get(f"/v1/customers/{grace['id']}/notices", headers=customer_headers("grace")).json()["data"]
    status = {n["subject"]: n["status"] for n in notices}
    assert status["marketing news"] == "skipped" and status["service news"] == "logged"
    assert [n["status"] for n in notices if n["type"] == "trial_expiring"] == ["logged"]


def test_no_personal_data_in_logs(client, caplog):
    from app.ops.observability import JsonFormatter

    caplog.set_level(logging.DEBUG, logger="billing")
    caplog.set_level(logging.INFO)
    make_plan(client)
    grace = _customer(client)
    start_trial(client, grace)
    buy(client, grace)
    client.post("/v1/customers", json={"email": EMAIL, "name": NAME, "country": "US"},
                headers=customer_headers("grace"))  # a refused duplicate
    client.post("/v1/customers", json={"email": "not-an-email", "name": NAME, "country": "US"},
                headers=customer_headers("x"))
    move_clock(client, "2031-01-01T00:00:00Z")
    run_due(client)
    client.delete(f"/v1/customers/{grace['id']}", headers=customer_headers("grace"))
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    assert any('"route": "/v1/customers"' in line for line in lines)  # the flow was logged
    for line in lines:
        assert "grace.hopper" not in line.lower() and "Hopper" not in line and "not-an-email" not in line, line
