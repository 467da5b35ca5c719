"""Paid subscriptions under truly concurrent requests, on PostgreSQL with real replicas (separate `billing serve`
processes on one database): one live subscription per customer, and every renewal charged exactly once when
several replicas run the due jobs at the same moment (B1, B2)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import START, customer_headers, ops_headers
from tests.support.servers import start_replica
from tests.test_concurrency import fire_together

pytestmark = pytest.mark.postgres

PERIOD_END = "2030-02-15T12:00:00Z"


@pytest.fixture
def replicas(clean_db, is_postgres):
    if not is_postgres:
        pytest.skip("concurrency is proven on PostgreSQL (BILLING_TEST_POSTGRES_URL)")
    # Small job batches, so that replicas running the jobs at once interleave their claims on the same rows.
    servers = [start_replica(clean_db, BILLING_JOB_BATCH_SIZE="4"), start_replica(clean_db, BILLING_JOB_BATCH_SIZE="4")]
    yield [s.url for s in servers]
    for server in servers:
        server.stop()


def _setup(url: str) -> None:
    ops = ops_headers()
    assert httpx.post(f"{url}/v1/sandbox/clock", json={"now": START}, headers=ops).status_code == 200
    plan = {
        "code": "pro-monthly",
        "name": "Pro",
        "tier": "subscription",
        "interval": "month",
        "amount": 2000,
        "currency": "usd",
        "trial_available": True,
    }
    assert httpx.post(f"{url}/v1/plans", json=plan, headers=ops).status_code == 201


def _customer(url: str, sub: str) -> dict:
    response = httpx.post(
        f"{url}/v1/customers",
        json={"email": f"{sub}@example.com", "name": sub, "country": "US"},
        headers=customer_headers(sub),
    )
    assert response.status_code == 201, response.text
    return response.json()


def _purchase_call(url: str, customer: dict) -> tuple[str, str, dict]:
    return (
        "POST",
        f"{url}/v1/subscriptions",
        {
            "json": {"customer_id": customer["id"], "plan": "pro-monthly", "payment_method": "pm_card_visa"},
            "headers": customer_headers(customer["external_id"]),
        },
    )


def _payments(url: str, customer: dict) -> list[dict]:
    response = httpx.get(f"{url}/v1/customers/{customer['id']}/payments?limit=100", headers=ops_headers())
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _assert_one_subscription(replicas: list[str], customer: dict, responses: list[httpx.Response]) -> None:
    assert sorted(r.status_code for r in responses) == [201] + [409] * (len(responses) - 1), [
        (r.status_code, r.json().get("id"), r.json().get("code")) for r in responses
    ]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"subscription_exists"}
    [created] = [r.json() for r in responses if r.status_code == 201]
    assert created["status"] == "active"
    listed = httpx.get(f"{replicas[1]}/v1/customers/{customer['id']}/subscriptions", headers=ops_headers()).json()
    assert [s["id"] for s in listed["data"]] == [created["id"]]
    payments = _payments(replicas[1], customer)
    assert [(p["status"], p["subscription_id"]) for p in payments] == [("succeeded", created["id"])]


def test_concurrent_identical_purchases_for_one_customer_make_one_subscription(replicas):
    _setup(replicas[0])
    for round_ in range(3):  # several rounds, so that the outcome does not hang on one race
        customer = _customer(replicas[0], f"alice{round_}")
        responses = fire_together([_purchase_call(replicas[i % 2], customer) for i in range(6)])
        _assert_one_subscription(replicas, customer, responses)


def test_concurrent_purchases_of_different_plans_for_one_customer_make_one_subscription(replicas):
    _setup(replicas[0])
    for code in ("basic", "plus", "max"):
        plan = {
            "code": code,
            "name": code,
            "tier": "subscription",
            "interval": "month",
            "amount": 1000,
            "currency": "usd",
            "trial_available": False,
        }
        assert httpx.post(f"{replicas[0]}/v1/plans", json=plan, headers=ops_headers()).status_code == 201
    plans = ["pro-monthly", "basic", "plus", "max"]
    for round_ in range(3):
        customer = _customer(replicas[0], f"bob{round_}")
        calls = []
        for i in range(6):
            method, url, kwargs = _purchase_call(replicas[i % 2], customer)
            kwargs["json"] = {
                **kwargs["json"],
                "plan": plans[i % len(plans)],
                "payment_method": ["pm_card_visa", "pm_card_mastercard"][i // len(plans)],
            }
            calls.append((method, url, kwargs))
        _assert_one_subscription(replicas, customer, fire_together(calls))


def test_B2_concurrent_run_due_on_two_replicas_renews_each_subscription_once(replicas):
    _setup(replicas[0])
    customers, subs = [], []
    for i in range(30):
        url = replicas[i % 2]
        customer = _customer(url, f"c{i}")
        _, purchase_url, kwargs = _purchase_call(url, customer)
        response = httpx.post(purchase_url, **kwargs)
        assert response.status_code == 201, response.text
        customers.append(customer)
        subs.append(response.json())
    ops = ops_headers()
    assert httpx.post(f"{replicas[0]}/v1/sandbox/clock", json={"now": PERIOD_END}, headers=ops).status_code == 200
    runs = fire_together([("POST", f"{replicas[i % 2]}/v1/sandbox/run-due", {"headers": ops}) for i in range(4)])
    assert all(r.status_code == 200 for r in runs), [r.text for r in runs]
    assert sum(r.json()["jobs"]["subscription_renewals"] for r in runs) == 30
    assert sum(r.json()["jobs"]["subscription_retries"] for r in runs) == 0
    for customer, sub in zip(customers, subs, strict=True):
        payments = _payments(replicas[1], customer)
        renewals = [p for p in payments if p["purpose"] == "renewal"]
        assert len(payments) == 2 and len(renewals) == 1, payments
        assert renewals[0]["status"] == "succeeded" and renewals[0]["amount"] == 2000
        assert (renewals[0]["period_start"], renewals[0]["period_end"]) == (PERIOD_END, "2030-03-15T12:00:00Z")
        renewed = httpx.get(f"{replicas[0]}/v1/subscriptions/{sub['id']}", headers=ops).json()
        assert renewed["status"] == "active" and renewed["current_period_start"] == PERIOD_END
        receipts = [
            n
            for n in httpx.get(f"{replicas[1]}/v1/customers/{customer['id']}/notices", headers=ops).json()["data"]
            if n["type"] == "receipt"
        ]
        assert len(receipts) == 2
    again = httpx.post(f"{replicas[1]}/v1/sandbox/run-due", headers=ops).json()["jobs"]
    assert again["subscription_renewals"] == 0
