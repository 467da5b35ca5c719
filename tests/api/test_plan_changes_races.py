"""Plan changes under truly concurrent requests, on PostgreSQL with two replicas (separate `billing serve`
processes on one database): one upgrade charged at most once, at most one pending change, and a change, a
cancellation and an upgrade racing each other leave a consistent subscription (C1, C3, C4)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import START, customer_headers, ops_headers
from tests.support.servers import start_replica
from tests.test_concurrency import fire_together

pytestmark = pytest.mark.postgres

PLANS = [("pro-monthly", "month", 2000), ("basic-monthly", "month", 1000), ("pro-yearly", "year", 20000)]
PLANS += [("enterprise-monthly", "month", 9000)]


@pytest.fixture
def replicas(clean_db, is_postgres):
    if not is_postgres:
        pytest.skip("concurrency is proven on PostgreSQL (BILLING_TEST_POSTGRES_URL)")
    servers = [start_replica(clean_db), start_replica(clean_db)]
    yield [s.url for s in servers]
    for server in servers:
        server.stop()


def _setup(url: str) -> None:
    ops = ops_headers()
    assert httpx.post(f"{url}/v1/sandbox/clock", json={"now": START}, headers=ops).status_code == 200
    for code, interval, amount in PLANS:
        plan = {
            "code": code,
            "name": code,
            "tier": "subscription",
            "interval": interval,
            "amount": amount,
            "currency": "usd",
            "trial_available": False,
        }
        assert httpx.post(f"{url}/v1/plans", json=plan, headers=ops).status_code == 201


def _subscribed(url: str, sub: str) -> dict:
    response = httpx.post(
        f"{url}/v1/customers",
        json={"email": f"{sub}@example.com", "name": sub, "country": "US"},
        headers=customer_headers(sub),
    )
    assert response.status_code == 201, response.text
    customer = response.json()
    response = httpx.post(
        f"{url}/v1/subscriptions",
        json={"customer_id": customer["id"], "plan": "pro-monthly", "payment_method": "pm_card_visa"},
        headers=customer_headers(sub),
    )
    assert response.status_code == 201, response.text
    return response.json()


def _change(url: str, sub: dict, owner: str, plan: str, when: str = "period_end") -> tuple[str, str, dict]:
    return (
        "POST",
        f"{url}/v1/subscriptions/{sub['id']}/change",
        {"json": {"plan": plan, "when": when}, "headers": customer_headers(owner)},
    )


def _upgrades(url: str, sub: dict) -> list[dict]:
    response = httpx.get(f"{url}/v1/customers/{sub['customer_id']}/payments?limit=100", headers=ops_headers())
    assert response.status_code == 200, response.text
    return [p for p in response.json()["data"] if p["purpose"] == "upgrade"]


def _codes(responses: list[httpx.Response]) -> list:
    return [(r.status_code, r.json().get("code")) for r in responses]


def test_C4_concurrent_upgrades_charge_once(replicas):
    _setup(replicas[0])
    for round_ in range(3):
        owner = f"up{round_}"
        sub = _subscribed(replicas[0], owner)
        responses = fire_together([_change(replicas[i % 2], sub, owner, "enterprise-monthly", "now") for i in range(6)])
        ok = [r for r in responses if r.status_code == 200]
        assert len(ok) == 1, _codes(responses)
        assert {r.json()["code"] for r in responses if r.status_code != 200} <= {"charge_in_progress", "same_plan"}
        assert [p["status"] for p in _upgrades(replicas[1], sub)] == ["succeeded"]
        shown = httpx.get(f"{replicas[1]}/v1/subscriptions/{sub['id']}", headers=ops_headers()).json()
        assert shown["plan"] == "enterprise-monthly" and shown["price"]["amount"] == 9000


def test_C3_concurrent_changes_leave_one_pending_change(replicas):
    _setup(replicas[0])
    owner = "many"
    sub = _subscribed(replicas[0], owner)
    targets = ["basic-monthly", "pro-yearly", "enterprise-monthly"]
    responses = fire_together([_change(replicas[i % 2], sub, owner, targets[i % 3]) for i in range(6)])
    assert all(r.status_code == 200 for r in responses), _codes(responses)
    shown = httpx.get(f"{replicas[0]}/v1/subscriptions/{sub['id']}", headers=ops_headers()).json()
    assert shown["pending_change"]["plan"] in targets and shown["plan"] == "pro-monthly"
    audit = httpx.get(
        f"{replicas[1]}/v1/audit-events",
        params={"customer_id": sub["customer_id"], "limit": 100},
        headers=ops_headers(),
    ).json()["data"]
    scheduled = [e for e in audit if e["action"] == "subscription.plan_change_scheduled"]
    assert len(scheduled) == 6
    # Each replaced the one before it: a chain, the newest one pending.
    replaced = {e["data"]["replaced_change"] for e in scheduled} - {None}
    assert len(replaced) == 5 and scheduled[0]["data"]["plan"] == shown["pending_change"]["plan"]


def test_C1_C3_C4_a_change_a_cancellation_and_an_upgrade_racing_stay_consistent(replicas):
    _setup(replicas[0])
    for round_ in range(8):
        owner = f"mix{round_}"
        sub = _subscribed(replicas[0], owner)
        cancel = (
            "POST",
            f"{replicas[1]}/v1/subscriptions/{sub['id']}/cancel",
            {"headers": customer_headers(owner)},
        )
        calls = [
            _change(replicas[0], sub, owner, "enterprise-monthly", "now"),
            cancel,
            _change(replicas[1], sub, owner, "basic-monthly"),
        ]
        responses = fire_together(calls)
        assert all(r.status_code in (200, 409) for r in responses), _codes(responses)
        assert {r.json()["code"] for r in responses if r.status_code == 409} <= {"charge_in_progress"}
        shown = httpx.get(f"{replicas[0]}/v1/subscriptions/{sub['id']}", headers=ops_headers()).json()
        upgrades = [p for p in _upgrades(replicas[1], sub) if p["status"] == "succeeded"]
        assert len(upgrades) == (1 if responses[0].status_code == 200 else 0)
        assert shown["plan"] == ("enterprise-monthly" if upgrades else "pro-monthly")
        # C1/C3: a pending change and a scheduled cancellation never stand together.
        assert not (shown["pending_change"] and shown["cancel_at_period_end"]), shown
        assert shown["status"] == "active"
