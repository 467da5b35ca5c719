"""Random sequences of what customers, ops, Stripe and time do, through the API (hypothesis RuleBasedStateMachine on
a clean database per example), with the policy's invariants checked after every step:

- one trial per person, customers sharing an e-mail address being one person (T5);
- nothing charged for a trial, nothing charged after a subscription ended (T3, C1): a customer who never bought
  has no payment, and no payment is created after its subscription's end;
- one succeeded charge per subscription period, refunded <= paid for every payment (B2, R2);
- every notice at most once per trial / payment / subscription (T3, T4, B5, receipts);
- GET /access says exactly what `policies.access` says about the API's own view of the customer, trial and
  subscription (and, independently of that code: a paid, running period gives access; nothing live gives none).

Each rule also checks its own answer against a small model (who may still have a trial, who has a live
subscription, what is left to refund).

The examples are derandomized, so a run is reproducible; RELIABILITY_RANDOM=1 draws new sequences and
RELIABILITY_EXAMPLES=N runs N of them (default 15, to stay within the suite's time budget).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import os
from collections import Counter

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from policies import AccessFacts, access, load_policy_book, normalise_email, past_due_grace_days
from tests.conftest import START, _empty, make_settings
from tests.reliability import invariants
from tests.reliability.support import Api, iso, parse
from tests.support.webhooks import intent_event, signature

PLAN = {
    "code": "pro-monthly",
    "name": "Pro",
    "tier": "subscription",
    "interval": "month",
    "amount": 2000,
    "currency": "usd",
    "trial_available": True,
}
# Two accounts of one person (the same address up to case and spaces), and two people with one account each.
EMAILS = ["Same.Person@Example.com", "  same.person@example.COM ", "solo2@example.com", "solo3@example.com"]
METHODS = {"visa": "pm_card_visa", "declined": "pm_card_chargeDeclined", "action": "pm_card_authenticationRequired"}
WEBHOOK_SECRET = "whsec_sandbox"
LIVE = ("incomplete", "active", "past_due")
PAST_DUE_GRACE_DAYS = past_due_grace_days(load_policy_book(None).at(parse(START)))  # B5

who = st.integers(min_value=0, max_value=len(EMAILS) - 1)


class BillingMachine(RuleBasedStateMachine):
    client: TestClient  # set by the test: one app for every example, the database emptied per example
    database_url: str

    def __init__(self) -> None:
        super().__init__()
        asyncio.run(_empty(self.database_url))
        self.api = Api(self.client)
        self.customers: list[dict] = []
        self.marked: set[str] = set()  # T5: people who had a trial or a paid subscription
        self.bought: set[int] = set()  # customers who ever asked to buy
        self.cancels: Counter = Counter()  # scheduled cancellations made, per customer
        self.suspended: set[int] = set()  # R3

    @initialize()
    def world(self) -> None:
        self.api.ok("POST", "/v1/sandbox/clock", json={"now": START})
        self.api.ok("POST", "/v1/plans", 201, json=PLAN)
        for i, email in enumerate(EMAILS):
            self.customers.append(
                self.api.as_customer(f"c{i}").ok(
                    "POST", "/v1/customers", 201, json={"email": email, "name": f"Customer {i}", "country": "US"}
                )
            )

    # --- helpers ---

    def me(self, i: int) -> Api:
        return self.api.as_customer(self.customers[i]["external_id"])

    def person(self, i: int) -> str:
        return normalise_email(EMAILS[i])

    def subscriptions(self, i: int) -> list[dict]:
        return self.api.all(f"/v1/customers/{self.customers[i]['id']}/subscriptions")

    def latest_subscription(self, i: int) -> dict | None:
        subs = self.subscriptions(i)
        return max(subs, key=lambda s: (s["created_at"], s["id"])) if subs else None

    def payments(self, i: int) -> list[dict]:
        return self.api.all(f"/v1/customers/{self.customers[i]['id']}/payments")

    def credit_balance(self, i: int) -> int:
        page = self.api.ok("GET", f"/v1/customers/{self.customers[i]['id']}/credits")
        return page["balances"].get("usd", 0)

    # --- rules ---

    @rule(i=who)
    def start_trial(self, i: int) -> None:
        response = self.me(i).post("/v1/trials", json={"customer_id": self.customers[i]["id"], "plan": PLAN["code"]})
        if i in self.suspended:
            assert response.status_code == 409 and response.json()["code"] == "customer_inactive", response.text
            return
        eligible = self.person(i) not in self.marked
        assert response.status_code == (201 if eligible else 409), (eligible, response.text)
        if response.status_code == 201:
            self.marked.add(self.person(i))
            trial = response.json()
            assert self.payments(i) == [] or i in self.bought
            assert parse(trial["ends_at"]) - parse(trial["started_at"]) == _dt.timedelta(days=30)  # T1
        else:
            assert response.json()["code"] == "trial_not_eligible"

    @rule(i=who, method=st.sampled_from(sorted(METHODS)))
    def purchase(self, i: int, method: str) -> None:
        live = [s for s in self.subscriptions(i) if s["status"] in LIVE]
        free = self.credit_balance(i) >= PLAN["amount"]  # the credit pays it all: no card is charged
        trials_before = self.api.all(f"/v1/customers/{self.customers[i]['id']}/trials")
        self.bought.add(i)
        response = self.me(i).post(
            "/v1/subscriptions",
            json={"customer_id": self.customers[i]["id"], "plan": PLAN["code"], "payment_method": METHODS[method]},
        )
        if i in self.suspended:
            assert response.status_code == 409 and response.json()["code"] == "customer_inactive", response.text
        elif live:
            assert response.status_code == 409 and response.json()["code"] == "subscription_exists", response.text
        elif method == "visa" or free:
            assert response.status_code == 201 and response.json()["status"] == "active", response.text
            self.marked.add(self.person(i))
            now = self.api.clock()
            running = [t for t in trials_before if t["status"] == "active" and parse(t["ends_at"]) > now]
            after = {t["id"]: t for t in self.api.all(f"/v1/customers/{self.customers[i]['id']}/trials")}
            assert all(after[t["id"]]["status"] == "forfeited" for t in running)  # T6
        elif method == "declined":
            assert response.status_code == 402 and response.json()["code"] == "card_declined", response.text
            assert not [s for s in self.subscriptions(i) if s["status"] in LIVE]  # B1: nothing granted
        else:
            body = response.json()
            assert response.status_code == 201 and body["status"] == "incomplete" and body["client_secret"], body

    @rule(i=who)
    def cancel(self, i: int) -> None:
        sub = self.latest_subscription(i)
        if sub is None:
            return
        response = self.me(i).post(f"/v1/subscriptions/{sub['id']}/cancel")
        if sub["status"] == "canceled":
            assert response.status_code == 409 and response.json()["code"] == "subscription_ended", response.text
            return
        assert response.status_code == 200, response.text
        after = response.json()
        if sub["status"] == "active":
            assert after["status"] == "active" and after["cancel_at_period_end"] is True  # C1
            if not sub["cancel_at_period_end"]:
                self.cancels[i] += 1
        else:  # incomplete or past_due: ends now, nothing charged
            assert after["status"] == "canceled" and after["ended_reason"] == "canceled", after

    @rule(i=who)
    def resume(self, i: int) -> None:
        sub = self.latest_subscription(i)
        if sub is None:
            return
        response = self.me(i).post(f"/v1/subscriptions/{sub['id']}/resume")
        if sub["status"] == "canceled":
            assert response.status_code == 409, response.text
        else:
            assert response.status_code == 200 and response.json()["cancel_at_period_end"] is False, response.text

    @rule(i=who, method=st.sampled_from(sorted(METHODS)))
    def change_payment_method(self, i: int, method: str) -> None:
        sub = self.latest_subscription(i)
        if sub is None:
            return
        response = self.me(i).post(
            f"/v1/subscriptions/{sub['id']}/payment-method", json={"payment_method": METHODS[method]}
        )
        assert response.status_code == (409 if sub["status"] == "canceled" else 200), response.text

    @rule(i=who, fraction=st.sampled_from([0.01, 0.25, 0.5, 1.0, 1.5]))
    def refund(self, i: int, fraction: float) -> None:
        paid = [p for p in self.payments(i) if p["status"] == "succeeded" and p["amount"] > 0]
        if not paid:
            return
        payment = max(paid, key=lambda p: (p["created_at"], p["id"]))
        amount = max(1, int(payment["amount"] * fraction))
        left = payment["amount"] - payment["refunded_amount"]
        response = self.api.post(f"/v1/payments/{payment['id']}/refunds", json={"amount": amount, "reason": "sorry"})
        if amount <= left:
            assert response.status_code == 201, response.text
        else:
            assert response.status_code == 422 and response.json()["code"] == "refund_exceeds_payment", response.text

    @rule(i=who, amount=st.sampled_from([1, 500, 2000, 2500]))
    def credit(self, i: int, amount: int) -> None:
        self.api.ok(
            "POST",
            f"/v1/customers/{self.customers[i]['id']}/credits",
            201,
            json={"amount": amount, "currency": "usd", "reason": "goodwill"},
        )

    @rule(i=who, twice=st.booleans(), late=st.booleans())
    def webhook_completes_payment(self, i: int, twice: bool, late: bool) -> None:
        """A signed payment_intent.succeeded for a payment that needed action: pending purchases become active
        (B1); `late`: a purchase given up already (cancelled, or expired after a day) is recorded and grants
        nothing; a failed renewal charge renews the period it paid for if that period is still awaited."""
        wanted = "failed" if late else "pending"
        candidates = [
            p for p in self.payments(i) if p["status"] == wanted and (p["gateway_payment_id"] or "").startswith("pi_")
        ]
        if not candidates:
            return
        payment = candidates[0]
        sub_before = self.api.ok("GET", f"/v1/subscriptions/{payment['subscription_id']}")
        access_before = self.api.ok("GET", f"/v1/customers/{self.customers[i]['id']}/access")
        evt = intent_event("payment_intent.succeeded", payment["gateway_payment_id"], amount=payment["amount"])
        payload = json.dumps(evt, separators=(",", ":"))
        for attempt in range(2 if twice else 1):
            response = self.api.http.post(
                "/v1/webhooks/stripe",
                content=payload.encode(),
                headers={"Stripe-Signature": signature(payload, WEBHOOK_SECRET), "Content-Type": "application/json"},
            )
            assert response.status_code == 200, response.text
            assert response.json()["duplicate"] is (attempt == 1)
        sub_after = self.api.ok("GET", f"/v1/subscriptions/{payment['subscription_id']}")
        if late and payment["purpose"] == "purchase":
            assert sub_after == sub_before  # nothing granted by money that came too late
            assert self.api.ok("GET", f"/v1/customers/{self.customers[i]['id']}/access") == access_before
        elif not late and sub_before["status"] == "incomplete":
            assert sub_after["status"] == "active", sub_after  # B1: active when the payment succeeds
            self.marked.add(self.person(i))

    @rule(i=who)
    def suspend_or_lift(self, i: int) -> None:
        """R3: suspension stops access until lifted; the period keeps running."""
        action = "unsuspend" if i in self.suspended else "suspend"
        after = self.api.ok("POST", f"/v1/customers/{self.customers[i]['id']}/{action}", json={"reason": "check"})
        assert after["status"] == ("active" if action == "unsuspend" else "suspended")
        self.suspended ^= {i}

    @rule(days=st.integers(min_value=1, max_value=40), hours=st.integers(min_value=0, max_value=23))
    def time_passes(self, days: int, hours: int) -> None:
        now = self.api.clock()
        self.api.ok("POST", "/v1/sandbox/clock", json={"now": iso(now + _dt.timedelta(days=days, hours=hours))})
        self.api.ok("POST", "/v1/sandbox/run-due")

    # --- invariants ---

    @invariant()
    def policy_holds(self) -> None:
        if not self.customers:
            return
        now = self.api.clock()
        views = [self.api.quick_view(c["id"]) for c in self.customers]
        emails = {c["id"]: EMAILS[i] for i, c in enumerate(self.customers)}
        problems = invariants.all_invariants(views, exact=True, settled=True, emails=emails)
        for i, view in enumerate(views):
            if i not in self.bought and (view["payments"] or view["subscriptions"]):
                problems.append(f"T3: customer {i} never bought but has {len(view['payments'])} payments")
            scheduled = sum(n["type"] == "cancellation_scheduled" for n in view["notices"])
            if scheduled > self.cancels[i]:
                problems.append(
                    f"customer {i}: {scheduled} cancellation_scheduled notices for {self.cancels[i]} cancellations"
                )
            problems += access_problems(i, view, now)
        assert not problems, "\n".join(problems)


def access_problems(i: int, view: dict, now: _dt.datetime) -> list[str]:
    trial = next((t for t in view["trials"] if t["status"] == "active"), None)
    sub = next((s for s in view["subscriptions"] if s["status"] in ("active", "past_due")), None)
    until = None
    if sub is not None:
        until = parse(sub["current_period_end"])
        if sub["status"] == "past_due":  # B5: access while retries remain
            until += _dt.timedelta(days=PAST_DUE_GRACE_DAYS)
    expected = access(
        AccessFacts(
            customer_status=view["customer"]["status"],
            trial_status=trial["status"] if trial else None,
            trial_ends_at=parse(trial["ends_at"]) if trial else None,
            trial_plan=trial["plan"] if trial else None,
            subscription_status=sub["status"] if sub else None,
            subscription_period_end=until,
            subscription_plan=sub["plan"] if sub else None,
        ),
        now,
    )
    got = view["access"]
    problems = []
    if (got["has_access"], got["source"], got["plan"], parse(got["until"])) != (
        expected.has_access,
        expected.source,
        expected.plan,
        expected.until,
    ):
        problems.append(f"access of customer {i}: API says {got}, policy says {expected}")
    # Independently of policies.access: the rules as api.md states them.
    paid_and_running = any(
        s["status"] in ("active", "past_due") and parse(s["current_period_end"]) > now for s in view["subscriptions"]
    )
    trial_running = any(t["status"] == "active" and parse(t["ends_at"]) > now for t in view["trials"])
    if view["customer"]["status"] == "active" and got["has_access"] != (
        paid_and_running or trial_running or got["source"] == "subscription"
    ):
        problems.append(
            f"access of customer {i}: {got} with running subscription={paid_and_running}, running trial={trial_running}"
        )
    if got["has_access"] and not (paid_and_running or trial_running or (sub and sub["status"] == "past_due")):
        problems.append(f"access of customer {i} without anything live: {got}")
    return problems


def test_random_sequences_keep_the_policy(database_url: str) -> None:
    from app.main import create_app

    with TestClient(create_app(make_settings(database_url)), raise_server_exceptions=False) as client:
        BillingMachine.client = client
        BillingMachine.database_url = database_url
        run_state_machine_as_test(
            BillingMachine,
            settings=settings(
                max_examples=int(os.environ.get("RELIABILITY_EXAMPLES", "15")),
                stateful_step_count=15,
                deadline=None,
                database=None,
                derandomize="RELIABILITY_RANDOM" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
