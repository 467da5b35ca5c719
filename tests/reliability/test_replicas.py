"""Two replicas on one PostgreSQL database, both running the scheduler every 0.5 s, under ~20 s of concurrent
traffic: trial starts by people who share an e-mail address over several accounts, purchases (succeeding,
declined, needing action), cancels and resumes, payment-method changes, signed webhooks completing payments that
needed action, ops refunds racing on the same payments, ops credits, and the sandbox clock moved forward by ops
while the schedulers renew, retry, expire and deliver.

Afterwards, through the API only (the sandbox gateway's ledger is not exposed): no person has two trials (T5); one
succeeded payment per subscription and period (B2); nothing is charged after a subscription ended or for a trial;
every notice at most once per trial/payment/subscription (T3, T4, receipts, B5); refunded <= paid and the
refunds add up to what each payment says (R2); no 5xx was ever answered and no scheduler run failed.

The races this test found (a lock-order deadlock on PostgreSQL, a refund retried while in flight, a cancellation
racing a renewal charge) are replayed deterministically in test_races.py."""

from __future__ import annotations

import datetime as _dt
import json
import random
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.conftest import START
from tests.reliability import invariants
from tests.reliability.support import Api, server_errors, start_service
from tests.support.webhooks import intent_event, signature

pytestmark = pytest.mark.postgres

TRAFFIC_SECONDS = 20
PEOPLE = 6  # each with ACCOUNTS accounts sharing one e-mail address up to case and spaces
ACCOUNTS = 3
BUYERS = 10
PLAN = {
    "code": "pro-monthly",
    "name": "Pro",
    "tier": "subscription",
    "interval": "month",
    "amount": 2000,
    "currency": "usd",
    "trial_available": True,
}
METHODS = ["pm_card_visa"] * 6 + ["pm_card_chargeDeclined", "pm_card_authenticationRequired"]
WEBHOOK_SECRET = "whsec_sandbox"  # the sandbox default (app/config.py)
# Answers a request may get under concurrency without anything being wrong.
EXPECTED = {
    "trial": {201, 409},
    "purchase": {201, 402, 409},
    "cancel": {200, 409},
    "resume": {200, 409},
    "payment_method": {200, 409},
    "refund": {201, 409, 422},
    "credit": {201},
    "clock": {200},
    "webhook": {200},
    "read": {200},
}


@pytest.fixture
def replica_log(tmp_path) -> Path:
    return tmp_path / "replicas.log"


@pytest.fixture
def replicas(clean_db, is_postgres, replica_log):
    if not is_postgres:
        pytest.skip("replicas share one database on PostgreSQL (BILLING_TEST_POSTGRES_URL)")
    env = {"BILLING_SCHEDULER_ENABLED": "true", "BILLING_SCHEDULER_INTERVAL_SECONDS": "0.5"}
    servers = []
    try:
        servers = [
            start_service(clean_db, log_file=replica_log, **env),
            start_service(clean_db, log_file=replica_log, **env),
        ]
        yield [s.url for s in servers]
    finally:
        for server in servers:
            server.stop()


class Traffic:
    """Shared state of the traffic threads: what they may act on, and every unexpected answer."""

    def __init__(self, urls: list[str], people: list[list[dict]], buyers: list[dict]) -> None:
        self.urls = urls
        self.people = people
        self.accounts = [a for person in people for a in person]
        self.buyers = buyers
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.unexpected: list[str] = []
        self.resets: list[str] = []
        self.calls: Counter = Counter()

    def api(self, http_by_url: dict[str, httpx.Client], rnd: random.Random) -> tuple[Api, str]:
        url = rnd.choice(self.urls)
        return Api(http_by_url[url]), url

    def note(self, kind: str, response: httpx.Response, what: str) -> None:
        with self.lock:
            self.calls[(kind, response.status_code)] += 1
            if response.status_code not in EXPECTED[kind]:
                self.unexpected.append(f"{kind} {what}: {response.status_code} {response.text[:300]}")

    def run(self, name: str, seed: int, step) -> threading.Thread:
        def loop() -> None:
            rnd = random.Random(seed)
            clients = {url: httpx.Client(base_url=url, timeout=60) for url in self.urls}
            try:
                while not self.stop.is_set():
                    try:
                        step(self, clients, rnd)
                    except httpx.TransportError as exc:
                        # A replica closes the connection after answering 500 (uvicorn, after an unhandled
                        # error): the next request on it may be reset. Counted, and a new connection is made.
                        with self.lock:
                            self.resets.append(f"{name}: {type(exc).__name__} {exc}")
                        for url in self.urls:
                            clients[url].close()
                            clients[url] = httpx.Client(base_url=url, timeout=60)
            finally:
                for client in clients.values():
                    client.close()

        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        return thread


def start_trials(t: Traffic, clients, rnd: random.Random) -> None:
    person = rnd.choice(t.people)
    account = rnd.choice(person)
    api, url = t.api(clients, rnd)
    r = api.as_customer(account["external_id"]).post(
        "/v1/trials", json={"customer_id": account["id"], "plan": PLAN["code"]}
    )
    t.note("trial", r, f"for {account['id']} on {url}")


def purchase(t: Traffic, clients, rnd: random.Random) -> None:
    customer = rnd.choice(t.buyers + t.accounts[:2])  # two trial accounts buy too (T5/T6 against purchases)
    api, _ = t.api(clients, rnd)
    r = api.as_customer(customer["external_id"]).post(
        "/v1/subscriptions",
        json={"customer_id": customer["id"], "plan": PLAN["code"], "payment_method": rnd.choice(METHODS)},
    )
    t.note("purchase", r, customer["id"])


def live_subscription(api: Api, t: Traffic, customer: dict) -> dict | None:
    r = api.get(f"/v1/customers/{customer['id']}/subscriptions", params={"limit": 1})
    t.note("read", r, "subscriptions")
    subs = r.json()["data"] if r.status_code == 200 else []
    return subs[0] if subs and subs[0]["status"] != "canceled" else None


def cancel_resume_or_change(t: Traffic, clients, rnd: random.Random) -> None:
    customer = rnd.choice(t.buyers)
    api, _ = t.api(clients, rnd)
    sub = live_subscription(api, t, customer)
    if sub is None:
        time.sleep(0.02)
        return
    me = api.as_customer(customer["external_id"])
    action = rnd.choice(["cancel", "resume", "resume", "payment_method"])
    if action == "payment_method":
        r = me.post(
            f"/v1/subscriptions/{sub['id']}/payment-method",
            json={"payment_method": rnd.choice([*METHODS[-3:], "pm_card_visa"])},
        )
    else:
        r = me.post(f"/v1/subscriptions/{sub['id']}/{action}")
    t.note(action, r, sub["id"])


def refund_and_credit(t: Traffic, clients, rnd: random.Random) -> None:
    customer = rnd.choice(t.buyers)
    api, _ = t.api(clients, rnd)
    if rnd.random() < 0.15:
        r = api.post(
            f"/v1/customers/{customer['id']}/credits",
            json={"amount": rnd.randint(1, 500), "currency": "usd", "reason": "goodwill"},
        )
        t.note("credit", r, customer["id"])
        return
    r = api.get(f"/v1/customers/{customer['id']}/payments", params={"limit": 5})
    t.note("read", r, "payments")
    paid = [p for p in r.json().get("data", []) if p["status"] == "succeeded"] if r.status_code == 200 else []
    if not paid:
        time.sleep(0.02)
        return
    payment = rnd.choice(paid)
    # Several refunds of the same payment at once, on both replicas: together they ask for more than was paid.
    amounts = [rnd.randint(1, max(1, payment["amount"] // 2)) for _ in range(3)]
    barrier = threading.Barrier(len(amounts))
    results: list[httpx.Response] = []

    def one(amount: int, url: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            barrier.wait()
            results.append(
                Api(http).post(
                    f"/v1/payments/{payment['id']}/refunds", json={"amount": amount, "reason": "racing refund"}
                )
            )

    threads = [threading.Thread(target=one, args=(a, t.urls[i % 2])) for i, a in enumerate(amounts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for response in results:
        t.note("refund", response, payment["id"])


def complete_needing_action(t: Traffic, clients, rnd: random.Random) -> None:
    customer = rnd.choice(t.buyers)
    api, _ = t.api(clients, rnd)
    r = api.get(f"/v1/customers/{customer['id']}/payments", params={"limit": 3})
    t.note("read", r, "payments")
    pending = (
        [
            p
            for p in r.json().get("data", [])
            if p["status"] == "pending" and p["purpose"] == "purchase" and p["gateway_payment_id"]
        ]
        if r.status_code == 200
        else []
    )
    if not pending:
        time.sleep(0.05)
        return
    payment = pending[0]
    evt = intent_event("payment_intent.succeeded", payment["gateway_payment_id"], amount=payment["amount"])
    payload = json.dumps(evt, separators=(",", ":"))
    for url in t.urls:  # the same event delivered to both replicas at about the same time (Stripe retries)
        response = clients[url].post(
            "/v1/webhooks/stripe",
            content=payload.encode(),
            headers={"Stripe-Signature": signature(payload, WEBHOOK_SECRET), "Content-Type": "application/json"},
        )
        t.note("webhook", response, payment["id"])


def move_clock(t: Traffic, clients, rnd: random.Random) -> None:
    api, _ = t.api(clients, rnd)
    now = api.clock()
    r = api.move_clock(now + _dt.timedelta(days=rnd.randint(1, 6), hours=rnd.randint(0, 23)))
    t.note("clock", r, "forward")
    time.sleep(0.5)


def setup(urls: list[str]) -> tuple[list[list[dict]], list[dict]]:
    ops = Api(httpx.Client(base_url=urls[0], timeout=60))
    ops.ok("POST", "/v1/sandbox/clock", json={"now": START})
    ops.ok("POST", "/v1/plans", 201, json=PLAN)
    people = []
    for p in range(PEOPLE):
        spellings = [f"person{p}@example.com", f"  Person{p}@Example.COM", f"PERSON{p}@example.com "]
        people.append(
            [
                ops.as_customer(f"p{p}a{a}").ok(
                    "POST",
                    "/v1/customers",
                    201,
                    json={"email": spellings[a % len(spellings)], "name": f"Person {p}", "country": "US"},
                )
                for a in range(ACCOUNTS)
            ]
        )
    buyers = [
        ops.as_customer(f"buyer{b}").ok(
            "POST", "/v1/customers", 201, json={"email": f"buyer{b}@example.com", "name": f"Buyer {b}", "country": "DE"}
        )
        for b in range(BUYERS)
    ]
    ops.http.close()
    return people, buyers


def quiesce(api: Api, customers: list[dict], timeout: float = 60) -> None:
    """Wait until the schedulers have nothing in flight: no renewal or retry payment pending, no refund pending,
    no notice waiting, twice in a row."""
    deadline = time.monotonic() + timeout
    calm = 0
    while calm < 2:
        assert time.monotonic() < deadline, "the replicas did not settle"
        busy = False
        for c in customers:
            payments = api.all(f"/v1/customers/{c['id']}/payments")
            notices = api.all(f"/v1/customers/{c['id']}/notices")
            busy |= any(p["status"] == "pending" and p["purpose"] != "purchase" for p in payments)
            busy |= any(n["status"] == "pending" for n in notices)
        calm = 0 if busy else calm + 1
        time.sleep(0.5)


def test_two_replicas_with_schedulers_under_concurrent_traffic_keep_every_invariant(
    replicas, replica_log, clean_db, record_property
):
    people, buyers = setup(replicas)
    traffic = Traffic(replicas, people, buyers)
    plan = [
        ("trials", start_trials, 3),
        ("purchases", purchase, 2),
        ("cancel-resume", cancel_resume_or_change, 2),
        ("refunds", refund_and_credit, 1),
        ("webhooks", complete_needing_action, 1),
        ("clock", move_clock, 1),
    ]
    threads = [
        traffic.run(f"{name}-{i}", seed=100 * k + i, step=step)
        for k, (name, step, count) in enumerate(plan)
        for i in range(count)
    ]
    time.sleep(TRAFFIC_SECONDS)
    traffic.stop.set()
    for thread in threads:
        thread.join(timeout=60)
    record_property("calls", dict(sorted((f"{k} {s}", n) for (k, s), n in traffic.calls.items())))
    logged = server_errors(replica_log)
    record_property("connection_resets", len(traffic.resets))
    assert not traffic.unexpected, "\n".join([*traffic.unexpected[:30], "logged by the replicas:", *logged[:10]])
    assert not traffic.resets, "\n".join(traffic.resets + logged)
    assert not logged, "\n".join(logged[:20])

    with httpx.Client(base_url=replicas[1], timeout=60) as http:
        api = Api(http)
        customers = traffic.accounts + buyers
        quiesce(api, customers)
        views = [api.view(c["id"]) for c in customers]
        record_property("clock_end", api.clock().isoformat())

    # The traffic did what it is meant to: trials raced, purchases renewed, refunds were made.
    counts = Counter()
    for view in views:
        counts["trials"] += len(view["trials"])
        counts["renewals"] += sum(p["purpose"] != "purchase" and p["status"] == "succeeded" for p in view["payments"])
        counts["refunds"] += sum(len(r) for r in view["refunds"].values())
        counts["failed_renewals"] += sum(
            p["purpose"] != "purchase" and p["status"] == "failed" for p in view["payments"]
        )
    record_property("outcomes", dict(counts))
    assert traffic.calls[("trial", 409)] > 0 and counts["trials"] >= 1
    assert counts["renewals"] > 0 and counts["refunds"] > 0

    emails = {a["id"]: a["email"] for a in traffic.accounts}
    problems = invariants.all_invariants(views, exact=True, settled=True, emails=emails)
    assert not problems, "\n".join(problems[:40])
