"""The renewal job settles its batch set-based (`charging.settle_many`): the common case, a renewal charge that
succeeded, in one statement per kind of write; anything else one by one. A batch that mixes them must leave each
subscription exactly as settling its payment alone would: here a plain renewal, a declined one (B5), one paid
partly with account credit (R2) and one whose customer was terminated while the charge was in flight (R3: the
money is recorded, nothing is granted)."""

from __future__ import annotations

import pytest

from app.audit.service import SYSTEM
from app.customers import standing
from app.gateways.base import charge_each
from app.uow import unit_of_work
from tests.api.test_dunning import PERIOD_END, RETRY_1, switch_method
from tests.api.test_subscriptions import buy, payments_of, subscription
from tests.api.test_trials import notices
from tests.conftest import START, make_customer, make_plan, make_settings, move_clock, ops_headers, run_due

NEXT_END = "2030-03-15T12:00:00Z"


class TerminatingGateway:
    """The sandbox gateway, except that charging `victim` first terminates that customer (as an ops action racing
    the renewal would), then charges as usual: the card is charged although the subscription ended meanwhile."""

    def __init__(self, inner, ctx) -> None:
        self.inner, self.ctx, self.name, self.victim = inner, ctx, inner.name, None

    async def charge(self, request):
        if request.customer_id == self.victim:
            async with unit_of_work(self.ctx) as uow:
                await standing.terminate(uow, SYSTEM, self.victim, "fraud")
        return await self.inner.charge(request)

    async def charge_many(self, requests):
        return await charge_each(self.charge, requests)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def audit_actions(client, customer: dict) -> list[str]:
    response = client.get(
        "/v1/audit-events", params={"customer_id": customer["id"], "limit": 100}, headers=ops_headers()
    )
    assert response.status_code == 200, response.text
    return [e["action"] for e in response.json()["data"]]


def test_a_mixed_renewal_batch_settles_each_payment_as_if_alone(client):
    ctx = client.app.state.ctx
    gateway = ctx.gateway = TerminatingGateway(ctx.gateway, ctx)
    make_plan(client, amount=2000)
    people = {name: make_customer(client, name) for name in ("alice", "bob", "carol", "dave")}
    subs = {name: buy(client, customer) for name, customer in people.items()}
    switch_method(client, subs["bob"], "pm_card_chargeDeclined", who="bob")
    granted = client.post(
        f"/v1/customers/{people['carol']['id']}/credits",
        json={"amount": 500, "currency": "usd", "reason": "goodwill"},
        headers=ops_headers(),
    )
    assert granted.status_code == 201, granted.text
    gateway.victim = people["dave"]["id"]
    move_clock(client, PERIOD_END)

    assert run_due(client)["subscription_renewals"] == 4

    # A plain renewal: the next period, paid; its receipt; its audit event.
    alice = subscription(client, subs["alice"]["id"])
    assert (alice["status"], alice["current_period_start"], alice["current_period_end"]) == (
        "active",
        PERIOD_END,
        NEXT_END,
    )
    renewal = payments_of(client, people["alice"])[0]
    assert (renewal["purpose"], renewal["status"], renewal["amount"]) == ("renewal", "succeeded", 2000)
    assert (renewal["period_start"], renewal["period_end"]) == (PERIOD_END, NEXT_END)
    assert renewal["gateway_payment_id"].startswith("pi_sandbox_")
    [receipt] = [n for n in notices(client, people["alice"]) if n["type"] == "receipt" and "15 March" in n["body"]]
    assert "20.00 USD" in receipt["subject"]
    assert audit_actions(client, people["alice"]).count("subscription.renewed") == 1

    # Declined: past due with its first retry date, a failure notice, no new period (B5).
    bob = subscription(client, subs["bob"]["id"])
    assert (bob["status"], bob["next_retry_at"], bob["current_period_end"]) == ("past_due", RETRY_1, PERIOD_END)
    assert payments_of(client, people["bob"])[0]["status"] == "failed"
    assert [n["type"] for n in notices(client, people["bob"])].count("payment_failed") == 1
    assert "subscription.renewed" not in audit_actions(client, people["bob"])

    # Credit first, then the card; the credit is spent by the charge that succeeded (R2).
    carol_payment = payments_of(client, people["carol"])[0]
    assert (carol_payment["status"], carol_payment["amount"], carol_payment["credit_applied"]) == (
        "succeeded",
        1500,
        500,
    )
    credits = client.get(f"/v1/customers/{people['carol']['id']}/credits", headers=ops_headers()).json()
    assert credits["balances"] == {} and [c["kind"] for c in credits["data"]] == ["spend", "grant"]
    assert subscription(client, subs["carol"]["id"])["current_period_end"] == NEXT_END

    # Terminated while charged: the money is on the books, the subscription stays ended (R3).
    dave = subscription(client, subs["dave"]["id"])
    assert (dave["status"], dave["ended_reason"], dave["current_period_end"]) == ("canceled", "terminated", PERIOD_END)
    assert payments_of(client, people["dave"])[0]["status"] == "succeeded"
    assert "payment.succeeded_without_effect" in audit_actions(client, people["dave"])
    assert not [n for n in notices(client, people["dave"]) if n["type"] == "receipt" and "15 March" in n["body"]]

    # Settled once: running the jobs again at the same instant charges and notifies nothing more.
    before = {name: (len(payments_of(client, c)), len(notices(client, c))) for name, c in people.items()}
    assert run_due(client)["subscription_renewals"] == 0
    assert before == {name: (len(payments_of(client, c)), len(notices(client, c))) for name, c in people.items()}
    assert START < PERIOD_END


@pytest.fixture
def small_batches(clean_db):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(make_settings(clean_db, job_batch_size=3)), raise_server_exceptions=False) as client:
        move_clock(client, START)
        yield client


def test_B2_a_run_renews_every_due_subscription_once_in_batches_some_at_once(small_batches):
    """More due than a batch holds: `run_due` claims batch after batch, on PostgreSQL several at once (the renewal
    job's workers, whose claims skip each other's rows). Each subscription is renewed once: one charge, one period,
    one receipt, one audit event."""
    client = small_batches
    make_plan(client, amount=2000)
    people = [make_customer(client, f"p{i}") for i in range(11)]
    subs = [buy(client, person) for person in people]
    move_clock(client, PERIOD_END)

    jobs = run_due(client)
    assert jobs["subscription_renewals"] == 11 and jobs["deliver_notices"] == 22  # purchase and renewal receipts
    assert run_due(client)["subscription_renewals"] == 0
    for person, sub in zip(people, subs, strict=True):
        renewals = [p for p in payments_of(client, person) if p["purpose"] == "renewal"]
        assert [(p["status"], p["amount"], p["period_start"]) for p in renewals] == [("succeeded", 2000, PERIOD_END)], (
            person["id"]
        )
        assert subscription(client, sub["id"])["current_period_end"] == NEXT_END
        assert sorted(n["type"] for n in notices(client, person)) == ["receipt", "receipt"]
        assert audit_actions(client, person).count("subscription.renewed") == 1
