"""B1 under concurrency, proven on PostgreSQL with two `billing serve` replicas on one database: a success that
bought nothing, reported by several events at once (Stripe may send more than one, or retry while the first is
still being applied) while both replicas run the due jobs, is refunded once, in full, with one notice."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import customer_headers, ops_headers
from tests.support.webhooks import intent_event, signature
from tests.test_concurrency import _customer, _setup, fire_together, replicas  # noqa: F401 - a fixture

pytestmark = pytest.mark.postgres
WHSEC = "whsec_sandbox"  # the sandbox's default webhook secret


def _signed(evt: dict) -> dict:
    payload = json.dumps(evt, separators=(",", ":"))
    return {
        "content": payload.encode(),
        "headers": {"Stripe-Signature": signature(payload, WHSEC), "Content-Type": "application/json"},
    }


def test_B1_racing_late_successes_and_jobs_refund_once(replicas):
    _setup(replicas[0])
    customer = _customer(replicas[0], "dana", "dana@example.com")
    bought = httpx.post(
        f"{replicas[0]}/v1/subscriptions",
        headers=customer_headers("dana"),
        json={"customer_id": customer["id"], "plan": "pro-monthly", "payment_method": "pm_card_authenticationRequired"},
    )
    assert bought.status_code == 201 and bought.json()["status"] == "incomplete", bought.text
    ops = ops_headers()
    [pending] = httpx.get(f"{replicas[1]}/v1/customers/{customer['id']}/payments", headers=ops).json()["data"]
    intent = pending["gateway_payment_id"]
    failed = httpx.post(
        f"{replicas[0]}/v1/webhooks/stripe",
        **_signed(intent_event("payment_intent.payment_failed", intent, amount=2000)),
    )
    assert failed.status_code == 200 and failed.json()["outcome"] == "applied", failed.text
    # Six distinct success events for the intent and two job runs, all at once on both replicas.
    calls = [
        (
            "POST",
            f"{replicas[i % 2]}/v1/webhooks/stripe",
            _signed(intent_event("payment_intent.succeeded", intent, amount=2000)),
        )
        for i in range(6)
    ]
    calls += [("POST", f"{replicas[i % 2]}/v1/sandbox/run-due", {"headers": ops}) for i in range(2)]
    responses = fire_together(calls)
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    outcomes = sorted(r.json()["outcome"] for r in responses[:6])
    assert outcomes == ["already_applied"] * 5 + ["refunded_late_success"], outcomes
    after = httpx.get(f"{replicas[0]}/v1/payments/{pending['id']}", headers=ops).json()
    assert after["status"] == "succeeded" and after["refunded_amount"] == after["amount"] == 2000
    [refund] = httpx.get(f"{replicas[1]}/v1/payments/{pending['id']}/refunds", headers=ops).json()["data"]
    assert (refund["source"], refund["amount"], refund["status"]) == ("correction", 2000, "succeeded")
    notices = httpx.get(f"{replicas[0]}/v1/customers/{customer['id']}/notices", headers=ops).json()["data"]
    assert [n["type"] for n in notices].count("payment_refunded") == 1
