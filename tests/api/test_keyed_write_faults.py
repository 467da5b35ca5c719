"""A database fault partway through a write made with an `Idempotency-Key` (review finding 1): a purchase and a
refund run several transactions around the gateway call (reserve, call, record). When the connection is lost after
the gateway answered and before its answer is recorded, the client gets 503 `database_unavailable` and retries with
its key; the retry must complete the first attempt's work, never repeat it (R2: one refund, never more than asked)
nor refuse it for good (B1: the paid purchase starts). And the keys' bookkeeping during an outage is one worker per
app, not a task per failed request (review finding 10c).

The fault is injected where the outcome is recorded (the use case's settle step raises the driver's connection
error, as a failover does): the same on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from fastapi.testclient import TestClient

import app.refunds.service as refund_service
import app.subscriptions.service as subscription_service
from tests.api.test_ops_actions import buy, payments_of
from tests.conftest import START, customer_headers, make_customer, make_plan, move_clock, ops_headers, run_due
from tests.support.cutting_proxy import CuttingProxy


def _fail_once(monkeypatch, module, name: str) -> list[int]:
    """`module.name` loses its database connection the first time it is called (before its COMMIT)."""
    real = getattr(module, name)
    calls: list[int] = []

    async def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("connection lost (simulated failover)")
        return await real(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)
    return calls


def test_R2_a_keyed_refund_whose_outcome_was_lost_is_completed_by_its_retry_and_refunds_once(client, monkeypatch):
    """R2: the reservation committed and the gateway refunded, then the database was lost before the outcome was
    saved (503). The retry with the same key completes that refund (201): one refund of 500, 500 refunded, also
    after the refund retry job has run; a third try replays the 201."""
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    buy(client, alice)
    [payment] = payments_of(client, alice)
    _fail_once(monkeypatch, refund_service, "settle_refund")
    headers = {**ops_headers(), "Idempotency-Key": "refund-1"}
    body = {"amount": 500, "reason": "goodwill"}
    path = f"/v1/payments/{payment['id']}/refunds"

    first = client.post(path, json=body, headers=headers)
    assert (first.status_code, first.json()["code"]) == (503, "database_unavailable"), first.text
    second = client.post(path, json=body, headers=headers)
    assert second.status_code == 201, second.text
    assert (second.json()["amount"], second.json()["status"]) == (500, "succeeded")

    move_clock(client, "2030-01-16T12:00:00Z")  # the retry job's turn, in case anything were left pending
    run_due(client)
    refunds = client.get(path, headers=ops_headers()).json()["data"]
    assert [(r["id"], r["amount"], r["status"]) for r in refunds] == [(second.json()["id"], 500, "succeeded")]
    [after] = payments_of(client, alice)
    assert after["refunded_amount"] == 500
    third = client.post(path, json=body, headers=headers)
    assert (third.status_code, third.json()["id"], third.headers.get("idempotent-replayed")) == (
        201,
        second.json()["id"],
        "true",
    )


def test_R2_a_keyed_refund_retried_with_another_body_after_a_fault_is_still_422(client, monkeypatch):
    """R2: the key kept for the retry of a refund that failed partway is still bound to its request."""
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    buy(client, alice)
    [payment] = payments_of(client, alice)
    _fail_once(monkeypatch, refund_service, "settle_refund")
    headers = {**ops_headers(), "Idempotency-Key": "refund-1"}
    path = f"/v1/payments/{payment['id']}/refunds"
    assert client.post(path, json={"amount": 500, "reason": "goodwill"}, headers=headers).status_code == 503
    other = client.post(path, json={"amount": 700, "reason": "goodwill"}, headers=headers)
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused"), other.text
    [after] = payments_of(client, alice)
    assert after["refunded_amount"] == 500  # the first attempt's reservation, completed by the retry job later


def test_B1_a_keyed_purchase_charged_whose_outcome_was_lost_starts_when_retried_with_its_key(client, monkeypatch):
    """B1: the first period was charged, then the database was lost before the outcome was saved (503). The retry
    with the same key resumes that payment (charged again with the same gateway key: the first charge's result, no
    second charge) and the subscription starts (201), instead of a 409 `subscription_exists` kept for 24 hours."""
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    _fail_once(monkeypatch, subscription_service.charging, "settle")
    headers = {**customer_headers("alice"), "Idempotency-Key": "buy-1"}
    body = {"customer_id": alice["id"], "plan": "pro-monthly", "payment_method": "pm_card_visa"}

    first = client.post("/v1/subscriptions", json=body, headers=headers)
    assert (first.status_code, first.json()["code"]) == (503, "database_unavailable"), first.text
    second = client.post("/v1/subscriptions", json=body, headers=headers)
    assert second.status_code == 201, second.text
    assert second.json()["status"] == "active"
    [payment] = payments_of(client, alice)
    assert (payment["status"], payment["amount"]) == ("succeeded", 2000)
    assert payment["gateway_payment_id"]
    third = client.post("/v1/subscriptions", json=body, headers=headers)
    assert (third.status_code, third.headers.get("idempotent-replayed")) == (201, "true")


def test_C1_a_keyed_cancellation_that_failed_after_committing_is_not_run_again_by_its_retry(client, monkeypatch):
    """C1: the cancellation of an unpaid purchase committed, then the database was lost (503) before the dropped
    PaymentIntent's cancellation at the gateway was noted. The key is not freed for a second run (which would
    answer 409 `subscription_ended` as if the first had failed): the retry answers 409
    `idempotency_response_lost`, the effect there once; a cancellation is not a request that resumes."""
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    pending = buy(client, alice, method="pm_card_authenticationRequired")
    assert pending["status"] == "incomplete"
    _fail_once(monkeypatch, subscription_service, "cancel_at_gateway")
    headers = {**customer_headers("alice"), "Idempotency-Key": "cancel-1"}
    path = f"/v1/subscriptions/{pending['id']}/cancel"
    first = client.post(path, headers=headers)
    assert (first.status_code, first.json()["code"]) == (503, "database_unavailable"), first.text
    retry = client.post(path, headers=headers)
    assert (retry.status_code, retry.json()["code"]) == (409, "idempotency_response_lost"), retry.text
    subscription = client.get(f"/v1/subscriptions/{pending['id']}", headers=customer_headers("alice")).json()
    assert subscription["status"] == "canceled"


def _outage(monkeypatch, db) -> dict:
    """While `state["down"]`, every use of `db` fails as an unreachable database does (connection refused)."""
    state = {"down": False}
    for name in ("transaction", "autocommit", "read"):
        real = getattr(db, name)

        def wrapped(real=real):
            @contextlib.asynccontextmanager
            async def use(*args, **kwargs):
                if state["down"]:
                    raise ConnectionRefusedError("database unreachable (simulated outage)")
                async with real(*args, **kwargs) as conn:
                    yield conn

            return use

        monkeypatch.setattr(db, name, wrapped())
    return state


def _other_tasks() -> int:
    async def count() -> int:
        return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])

    return count


def test_keyed_requests_failing_in_an_outage_leave_one_bookkeeping_worker_that_frees_their_keys(app, monkeypatch):
    """Review finding 10c: 20 keyed writes during an outage (each 503) leave one background worker, not a task each;
    once the database is back their keys are freed (each retry runs: 201); shutdown leaves no worker running.
    The writes are purchases, whose key is claimed apart from their units of work (they call the gateway); a
    database-only write (a sign-up) has its key taken by its unit of work, so an outage leaves nothing behind for
    the worker, and its retry runs too."""
    ctx = app.state.ctx
    state = _outage(monkeypatch, ctx.db)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.post("/v1/sandbox/clock", json={"now": START}, headers=ops_headers())
        make_plan(client, amount=2000)
        buyers = {f"buyer-{n}": make_customer(client, f"buyer-{n}") for n in range(20)}
        baseline = client.portal.call(_other_tasks())
        state["down"] = True
        signup = {"email": "s@example.com", "name": "S", "country": "US"}
        signup_headers = {**customer_headers("signup"), "Idempotency-Key": "signup"}
        answer = client.post("/v1/customers", json=signup, headers=signup_headers)
        assert (answer.status_code, answer.json()["code"]) == (503, "database_unavailable"), answer.text
        assert ctx.bookkeeping.pending == 0  # the key went with the unit of work that never began
        for key, customer in buyers.items():
            answer = client.post(
                "/v1/subscriptions", json=_purchase(customer), headers={**customer_headers(key), "Idempotency-Key": key}
            )
            assert (answer.status_code, answer.json()["code"]) == (503, "database_unavailable"), answer.text
        assert client.portal.call(_other_tasks()) - baseline <= 1
        assert ctx.bookkeeping.running

        state["down"] = False
        deadline = time.monotonic() + 15
        while ctx.bookkeeping.pending and time.monotonic() < deadline:
            time.sleep(0.1)
        for key, customer in buyers.items():
            answer = client.post(
                "/v1/subscriptions", json=_purchase(customer), headers={**customer_headers(key), "Idempotency-Key": key}
            )
            assert answer.status_code == 201, answer.text
        assert client.post("/v1/customers", json=signup, headers=signup_headers).status_code == 201

        late = make_customer(client, "late")
        state["down"] = True  # one more left behind at shutdown
        answer = client.post(
            "/v1/subscriptions", json=_purchase(late), headers={**customer_headers("late"), "Idempotency-Key": "late"}
        )
        assert answer.status_code == 503
        assert ctx.bookkeeping.running
    assert not ctx.bookkeeping.running
    assert ctx.bookkeeping.pending == 0


def _purchase(customer: dict) -> dict:
    return {"customer_id": customer["id"], "plan": "pro-monthly", "payment_method": "pm_card_visa"}


@pytest.mark.postgres
@pytest.mark.parametrize("cut", ["before", "after"])
def test_R2_a_keyed_refund_whose_last_commit_was_cut_has_one_refund_when_retried_with_its_key(
    clean_db: str, is_postgres: bool, cut: str
) -> None:
    """R2 on PostgreSQL, the connection cut at the COMMIT that records the gateway's answer (`before`: it never
    reached the server; `after`: it committed, its answer lost), the reservation and the gateway's refund having
    committed before it. The client gets 503 and retries with its key: one refund of 500 either way, completed,
    never a second one reserved (before the fix, `before` freed the key: a new refund, 1000 reserved)."""
    if not is_postgres:
        pytest.skip("a connection cut mid-COMMIT is proven on PostgreSQL")
    from app.main import create_app
    from tests.conftest import make_settings

    with (
        CuttingProxy(clean_db) as proxy,
        TestClient(create_app(make_settings(proxy.url())), raise_server_exceptions=False) as client,
    ):
        client.post("/v1/sandbox/clock", json={"now": START}, headers=ops_headers())
        make_plan(client, amount=2000)
        alice = make_customer(client, "alice")
        buy(client, alice)
        [payment] = payments_of(client, alice)
        gateway = client.app.state.ctx.gateway
        real_refund = gateway.refund

        async def refund_then_arm(*args, **kwargs):
            result = await real_refund(*args, **kwargs)
            if not proxy.cuts:
                proxy.arm(cut)  # the next COMMIT is the one recording this answer
            return result

        gateway.refund = refund_then_arm
        path = f"/v1/payments/{payment['id']}/refunds"
        grant = {
            "json": {"amount": 500, "reason": "goodwill"},
            "headers": {**ops_headers(), "Idempotency-Key": f"refund-cut-{cut}"},
        }
        first = client.post(path, **grant)
        assert proxy.cuts == 1
        assert (first.status_code, first.json()["code"]) == (503, "database_unavailable"), first.text
        deadline = time.monotonic() + 10
        while (retry := client.post(path, **grant)).status_code == 409 and retry.json()[
            "code"
        ] == "idempotency_key_in_use":
            assert time.monotonic() < deadline, "the key was never settled"
            time.sleep(0.1)
        assert retry.status_code == 201, retry.text
        refunds = client.get(path, headers=ops_headers()).json()["data"]
        assert [(r["id"], r["amount"], r["status"]) for r in refunds] == [(retry.json()["id"], 500, "succeeded")]
        [after] = payments_of(client, alice)
        assert after["refunded_amount"] == 500
