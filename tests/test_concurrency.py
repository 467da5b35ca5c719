"""Concurrency, proven on PostgreSQL with real replicas: separate `billing serve` processes on one database,
hit by truly concurrent requests (T4, T5)."""

from __future__ import annotations

import concurrent.futures
import threading

import httpx
import pytest

from tests.conftest import START, customer_headers, ops_headers
from tests.support.servers import start_replica

pytestmark = pytest.mark.postgres


@pytest.fixture
def replicas(clean_db, is_postgres):
    if not is_postgres:
        pytest.skip("concurrency is proven on PostgreSQL (BILLING_TEST_POSTGRES_URL)")
    servers = [start_replica(clean_db), start_replica(clean_db)]
    yield [s.url for s in servers]
    for server in servers:
        server.stop()


def fire_together(calls: list) -> list[httpx.Response]:
    """Run every call at the same moment (a barrier), each in its own thread with its own connection."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        method, url, kwargs = call
        with httpx.Client(timeout=60) as http:
            barrier.wait()
            return http.request(method, url, **kwargs)

    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


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


def _customer(url: str, sub: str, email: str) -> dict:
    response = httpx.post(
        f"{url}/v1/customers", json={"email": email, "name": sub, "country": "US"}, headers=customer_headers(sub)
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_T5_concurrent_trial_requests_for_one_person_make_one_trial(replicas):
    _setup(replicas[0])
    # Eight accounts of one person (same e-mail up to case and spaces), each asking for a trial at once,
    # spread over both replicas.
    accounts = [_customer(replicas[0], f"p{i}", f"  Person@Example.com{' ' * i}") for i in range(8)]
    calls = [
        (
            "POST",
            f"{replicas[i % 2]}/v1/trials",
            {"json": {"customer_id": a["id"], "plan": "pro-monthly"}, "headers": customer_headers(a["external_id"])},
        )
        for i, a in enumerate(accounts)
    ]
    responses = fire_together(calls)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 7, [r.text for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"trial_not_eligible"}
    # And one account hammering the same request on both replicas: still one trial.
    solo = _customer(replicas[0], "solo", "solo@example.com")
    body = {"json": {"customer_id": solo["id"], "plan": "pro-monthly"}, "headers": customer_headers("solo")}
    responses = fire_together([("POST", f"{replicas[i % 2]}/v1/trials", body) for i in range(6)])
    assert sorted(r.status_code for r in responses) == [201] + [409] * 5


def test_T4_scheduler_on_several_replicas_sends_each_notice_once(replicas):
    _setup(replicas[0])
    trials = []
    for i in range(40):
        customer = _customer(replicas[i % 2], f"c{i}", f"c{i}@example.com")
        response = httpx.post(
            f"{replicas[i % 2]}/v1/trials",
            json={"customer_id": customer["id"], "plan": "pro-monthly"},
            headers=customer_headers(f"c{i}"),
        )
        assert response.status_code == 201
        trials.append(response.json())
    ops = ops_headers()
    # The notices fall due (all at once), then the trials end (T4 sends no notice once a trial has ended).
    for field, job in (("notice_at", "trial_expiring_notices"), ("ends_at", "trial_expiry")):
        assert (
            httpx.post(
                f"{replicas[0]}/v1/sandbox/clock", json={"now": max(t[field] for t in trials)}, headers=ops
            ).status_code
            == 200
        )
        runs = fire_together([("POST", f"{replicas[i % 2]}/v1/sandbox/run-due", {"headers": ops}) for i in range(4)])
        assert all(r.status_code == 200 for r in runs), [r.text for r in runs]
        assert sum(r.json()["jobs"][job] for r in runs) == 40, job
    for trial in trials:
        listed = httpx.get(f"{replicas[1]}/v1/customers/{trial['customer_id']}/notices", headers=ops).json()["data"]
        assert sorted(n["type"] for n in listed) == ["trial_expired", "trial_expiring"]


def test_R2_racing_refunds_never_exceed_the_payment(replicas):
    _setup(replicas[0])
    customer = _customer(replicas[0], "payer", "payer@example.com")
    bought = httpx.post(
        f"{replicas[0]}/v1/subscriptions",
        headers=customer_headers("payer"),
        json={"customer_id": customer["id"], "plan": "pro-monthly", "payment_method": "pm_card_visa"},
    )
    assert bought.status_code == 201, bought.text
    ops = ops_headers()
    [payment] = httpx.get(f"{replicas[1]}/v1/customers/{customer['id']}/payments", headers=ops).json()["data"]
    # Ten refunds of 300 against a payment of 2000, all at once on both replicas: six fit, four must not.
    calls = [
        (
            "POST",
            f"{replicas[i % 2]}/v1/payments/{payment['id']}/refunds",
            {"json": {"amount": 300, "reason": f"race {i}"}, "headers": ops},
        )
        for i in range(10)
    ]
    responses = fire_together(calls)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 6 + [422] * 4, [r.text for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 422} == {"refund_exceeds_payment"}
    after = httpx.get(f"{replicas[0]}/v1/payments/{payment['id']}", headers=ops).json()
    assert after["refunded_amount"] == 1800 <= after["amount"]
