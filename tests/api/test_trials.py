"""The trial offer through HTTP and the scheduler, with the sandbox clock (T1-T5, T7)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import (
    START,
    customer_headers,
    make_customer,
    make_plan,
    make_settings,
    move_clock,
    ops_headers,
    run_due,
)

DAY = _dt.timedelta(days=1)


def iso(value: _dt.datetime) -> str:
    return value.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(value: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def start_trial(client, customer: dict, plan: str = "pro-monthly", sub: str | None = None):
    return client.post(
        "/v1/trials",
        json={"customer_id": customer["id"], "plan": plan},
        headers=customer_headers(sub or customer["external_id"]),
    )


def notices(client, customer: dict) -> list[dict]:
    response = client.get(f"/v1/customers/{customer['id']}/notices", headers=ops_headers())
    assert response.status_code == 200
    return response.json()["data"]


def test_T1_T2_trial_starts_without_payment_method_for_30_days(client):
    make_plan(client)
    customer = make_customer(client, "alice")
    response = start_trial(client, customer)
    assert response.status_code == 201, response.text
    trial = response.json()
    assert trial["status"] == "active" and trial["plan"] == "pro-monthly"
    assert trial["started_at"] == START
    assert parse(trial["ends_at"]) - parse(trial["started_at"]) == 30 * DAY  # T1
    assert parse(trial["ends_at"]) - parse(trial["notice_at"]) == 7 * DAY  # T4
    assert trial["policy_version"] == "2026-11-01"
    assert client.get(f"/v1/trials/{trial['id']}", headers=customer_headers("alice")).json() == trial
    listed = client.get(f"/v1/customers/{customer['id']}/trials", headers=customer_headers("alice")).json()
    assert [t["id"] for t in listed["data"]] == [trial["id"]] and listed["has_more"] is False


def test_T5_one_trial_per_customer_and_per_email(client):
    make_plan(client)
    alice = make_customer(client, "alice", email="Alice@Example.com")
    assert start_trial(client, alice).status_code == 201
    again = start_trial(client, alice)
    assert again.status_code == 409 and again.json()["code"] == "trial_not_eligible"
    # Same person, another account: the e-mail compared case-insensitively, surrounding spaces ignored.
    twin = make_customer(client, "alice-2", email="  alice@example.COM ")
    refused = start_trial(client, twin)
    assert refused.status_code == 409 and refused.json()["code"] == "trial_not_eligible"
    assert refused.headers["content-type"] == "application/problem+json"
    bob = make_customer(client, "bob", email="bob@example.com")
    assert start_trial(client, bob).status_code == 201


def test_T5_trial_still_refused_after_it_expired(client):
    make_plan(client)
    alice = make_customer(client, "alice")
    trial = start_trial(client, alice).json()
    move_clock(client, trial["ends_at"])
    run_due(client)
    assert client.get(f"/v1/trials/{trial['id']}", headers=ops_headers()).json()["status"] == "expired"
    assert start_trial(client, alice).json()["code"] == "trial_not_eligible"


def test_trial_not_available_on_a_plan_without_one(client):
    make_plan(client, code="enterprise-yearly", tier="enterprise", interval="year", trial_available=False)
    customer = make_customer(client, "carol")
    response = start_trial(client, customer, plan="enterprise-yearly")
    assert response.status_code == 409 and response.json()["code"] == "trial_not_available"
    # Refused for the plan, not for the person: a plan with a trial still works.
    make_plan(client)
    assert start_trial(client, customer).status_code == 201


def test_trial_for_unknown_plan_or_someone_elses_customer(client):
    make_plan(client)
    alice = make_customer(client, "alice")
    assert start_trial(client, alice, plan="nope").status_code == 404
    assert start_trial(client, alice, sub="mallory").status_code == 404
    assert (
        client.post(
            "/v1/trials",
            json={"customer_id": alice["id"], "plan": "pro-monthly", "status": "expired"},
            headers=customer_headers("alice"),
        ).status_code
        == 422
    )


def test_T4_expiring_notice_exactly_once_seven_days_before_the_end(client):
    make_plan(client)
    alice = make_customer(client, "alice")
    trial = start_trial(client, alice).json()
    notice_at = parse(trial["notice_at"])
    move_clock(client, iso(notice_at - _dt.timedelta(seconds=1)))
    assert run_due(client)["trial_expiring_notices"] == 0
    assert notices(client, alice) == []
    move_clock(client, trial["notice_at"])
    assert run_due(client)["trial_expiring_notices"] == 1
    assert run_due(client)["trial_expiring_notices"] == 0  # the scheduler running twice sends nothing more
    [notice] = notices(client, alice)
    assert notice["type"] == "trial_expiring" and notice["category"] == "service"
    assert "Payment is due in 7 days" in notice["body"] and "expiring" in notice["body"]
    assert notice["status"] == "logged" and notice["sent_at"] == trial["notice_at"]  # no SMTP configured


def test_T4_no_expiring_notice_once_the_trial_has_ended(client):
    """T4: after a long scheduler outage, a trial that ended weeks ago gets only its `trial_expired` notice: an
    "expiring, payment is due in 7 days" notice could only go out after the end, so it is not sent."""
    make_plan(client)
    alice = make_customer(client, "alice")
    trial = start_trial(client, alice).json()
    move_clock(client, iso(parse(trial["ends_at"]) + 21 * DAY))
    jobs = run_due(client)
    assert jobs["trial_expiring_notices"] == 0 and jobs["trial_expiry"] == 1
    assert [n["type"] for n in notices(client, alice)] == ["trial_expired"]
    assert run_due(client)["trial_expiring_notices"] == 0
    assert [n["type"] for n in notices(client, alice)] == ["trial_expired"]


def test_T4_late_expiring_notice_states_the_real_end_and_days_left(client):
    """T4: a notice that goes out 5 days late (2 days before the end) says 2 days, not 7, and the end date."""
    make_plan(client)
    alice = make_customer(client, "alice")
    trial = start_trial(client, alice).json()
    ends_at = parse(trial["ends_at"])
    move_clock(client, iso(ends_at - 2 * DAY))
    assert run_due(client)["trial_expiring_notices"] == 1
    [notice] = notices(client, alice)
    assert notice["type"] == "trial_expiring"
    assert "Payment is due in 2 days" in notice["body"] and "7 days" not in notice["body"]
    assert ends_at.strftime("%d %B %Y, %H:%M UTC") in notice["body"]
    assert ends_at.strftime("%d %B %Y") in notice["subject"]
    # At the end the trial expires; the expiring notice is not repeated.
    move_clock(client, trial["ends_at"])
    jobs = run_due(client)
    assert jobs["trial_expiring_notices"] == 0 and jobs["trial_expiry"] == 1
    assert sorted(n["type"] for n in notices(client, alice)) == ["trial_expired", "trial_expiring"]


def test_T3_trial_expires_without_charge_and_prompts_to_buy(client):
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    trial = start_trial(client, alice).json()
    access = client.get(f"/v1/customers/{alice['id']}/access", headers=customer_headers("alice")).json()
    assert access == {
        "object": "access",
        "has_access": True,
        "source": "trial",
        "plan": "pro-monthly",
        "until": trial["ends_at"],
        "reason": "trial_active",
    }
    # The clock jumps past the end: the trial expires, once, and its notice says so (T4: no late "expiring" one).
    move_clock(client, iso(parse(trial["ends_at"]) + 3 * DAY))
    jobs = run_due(client)
    assert jobs["trial_expiring_notices"] == 0 and jobs["trial_expiry"] == 1
    expired = client.get(f"/v1/trials/{trial['id']}", headers=customer_headers("alice")).json()
    assert expired["status"] == "expired" and expired["ended_at"] == trial["ends_at"]
    types = [n["type"] for n in notices(client, alice)]
    assert types == ["trial_expired"]
    prompt = next(n for n in notices(client, alice) if n["type"] == "trial_expired")
    assert "Pro-Monthly" in prompt["body"] and "20.00 USD per month" in prompt["body"]
    assert "Nothing was charged" in prompt["body"]
    access = client.get(f"/v1/customers/{alice['id']}/access", headers=customer_headers("alice")).json()
    assert access["has_access"] is False and access["source"] is None and access["reason"] == "no_subscription"
    assert run_due(client)["trial_expiry"] == 0


def _policy_dir(tmp_path: Path, *docs: tuple[str, str, int, int]) -> Path:
    for version, effective_from, days, notice in docs:
        (tmp_path / f"{version}.toml").write_text(
            f'version = "{version}"\neffective_from = {effective_from}\n'
            f"[trial]\ndays = {days}\nnotice_days_before_end = {notice}\n"
            "[billing]\nretry_schedule_days = [1, 3, 7]\n[tax_rates]\n"
        )
    return tmp_path


def _client_with(settings):
    from app.main import create_app

    client = TestClient(create_app(settings), raise_server_exceptions=False)
    client.__enter__()
    move_clock(client, START)
    return client


def test_T4_trial_shorter_than_the_notice_window_gets_its_notice_at_start(clean_db, tmp_path):
    policies = _policy_dir(tmp_path, ("2026-12-01", "2026-01-01T00:00:00Z", 5, 7))
    client = _client_with(make_settings(clean_db, policy_dir=policies))
    try:
        make_plan(client)
        alice = make_customer(client, "alice")
        trial = start_trial(client, alice).json()
        assert trial["notice_at"] == trial["started_at"]
        assert parse(trial["ends_at"]) - parse(trial["started_at"]) == 5 * DAY
        [notice] = notices(client, alice)
        assert notice["type"] == "trial_expiring" and "Payment is due in 5 days" in notice["body"]
        assert run_due(client)["trial_expiring_notices"] == 0
        assert len(notices(client, alice)) == 1
    finally:
        client.__exit__(None, None, None)


def test_T7_offer_change_applies_to_trials_started_after_it(clean_db, tmp_path):
    policies = _policy_dir(
        tmp_path, ("2026-11-01", "2026-01-01T00:00:00Z", 30, 7), ("2030-02-01", "2030-02-01T00:00:00Z", 7, 3)
    )
    client = _client_with(make_settings(clean_db, policy_dir=policies))
    try:
        make_plan(client)
        early = start_trial(client, make_customer(client, "early")).json()
        assert early["policy_version"] == "2026-11-01"
        move_clock(client, "2030-02-02T00:00:00Z")
        late = start_trial(client, make_customer(client, "late")).json()
        assert late["policy_version"] == "2030-02-01"
        assert parse(late["ends_at"]) - parse(late["started_at"]) == 7 * DAY
        assert parse(late["ends_at"]) - parse(late["notice_at"]) == 3 * DAY
        # The running trial keeps the end date it was given.
        kept = client.get(f"/v1/trials/{early['id']}", headers=ops_headers()).json()
        assert kept["ends_at"] == early["ends_at"] == "2030-02-14T12:00:00Z"
    finally:
        client.__exit__(None, None, None)


def test_trial_needs_an_active_customer_and_a_valid_body(client):
    make_plan(client)
    alice = make_customer(client, "alice")
    for body in ({}, {"customer_id": alice["id"]}, {"plan": "pro-monthly"}, {"customer_id": "", "plan": "x"}):
        response = client.post("/v1/trials", json=body, headers=customer_headers("alice"))
        assert response.status_code == 422 and response.json()["code"] == "validation_error"
    assert client.get(f"/v1/customers/{alice['id']}/trials", headers=customer_headers("alice")).json()["data"] == []


@pytest.mark.parametrize("sub", ["alice", "mallory"])
def test_access_and_notices_are_private(client, sub):
    make_plan(client)
    alice = make_customer(client, "alice")
    expected = 200 if sub == "alice" else 404
    for path in ("access", "notices", "trials"):
        assert client.get(f"/v1/customers/{alice['id']}/{path}", headers=customer_headers(sub)).status_code == expected
