"""Domain events (api.md "Events and outbound webhooks"; issue 15 item 5): each state change records its events in
its own transaction, with the object as its own GET shows it right after the change; a refused request records
none; a change that fails after recording leaves none. Observed through `GET /v1/events` only.

The rules the events report are cited where each change is made: T2/T3/T4/T6 (trials), B1/B2/B5 (purchase,
renewal, dunning), C1/C2 (cancel, resume), R2 (refund, credit), R3 (standing), D3 (erasure)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from app.db import Database
from tests.api import shared
from tests.api.test_dunning import switch_method
from tests.api.test_subscriptions import buy, purchase, subscription
from tests.conftest import START, customer_headers, make_customer, make_plan, move_clock, ops_headers, run_due

client = shared.client
module_client = shared.module_client

PERIOD_END = "2030-02-15T12:00:00Z"
SECOND_PERIOD_END = "2030-03-15T12:00:00Z"
RETRY_1, RETRY_2, RETRY_3 = "2030-03-16T12:00:00Z", "2030-03-18T12:00:00Z", "2030-03-22T12:00:00Z"  # B5: +1, +3, +7 d


DOCUMENT_EVENTS = ("invoice.issued", "credit_note.issued")


def events_of(client, customer_id: str | None = None, *, documents: bool = False, **filters: str) -> list[dict]:
    """Every event (of the customer), oldest first, read page by page as a client would; without `documents`, and
    unless a `type` is asked for, the events of the invoices and credit notes issued (I1/I2) are left out (they are
    tested in tests/api/test_invoices_issuance.py)."""
    if not documents and "type" not in filters:
        return [
            e for e in events_of(client, customer_id, documents=True, **filters) if e["type"] not in DOCUMENT_EVENTS
        ]
    params = {"limit": "100", **filters}
    if customer_id is not None:
        params["customer_id"] = customer_id
    found: list[dict] = []
    while True:
        response = client.get("/v1/events", params=params, headers=ops_headers())
        assert response.status_code == 200, response.text
        body = response.json()
        found += body["data"]
        if not body["has_more"]:
            return list(reversed(found))
        params["starting_after"] = body["data"][-1]["id"]


def get(client, path: str) -> dict:
    response = client.get(path, headers=ops_headers())
    assert response.status_code == 200, response.text
    return response.json()


def ok(response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


class Life:
    """The events a scripted life should have recorded: each change's types, with the objects read right after."""

    def __init__(self, client, customer: dict) -> None:
        self.client, self.customer, self.expected = client, customer, []

    def saw(self, type_: str, obj: dict) -> None:
        self.expected.append((type_, obj))

    def customer_now(self) -> dict:
        return get(self.client, f"/v1/customers/{self.customer['id']}")

    def access_now(self) -> dict:
        return get(self.client, f"/v1/customers/{self.customer['id']}/access")

    def payments(self) -> list[dict]:
        return get(self.client, f"/v1/customers/{self.customer['id']}/payments?limit=100")["data"]

    def trial(self, trial_id: str) -> dict:
        return get(self.client, f"/v1/trials/{trial_id}")

    def recorded(self) -> list[tuple[str, dict]]:
        return [(e["type"], e["data"]["object"]) for e in events_of(self.client, self.customer["id"])]


def test_every_change_of_a_customer_life_records_its_events_once_in_order_with_the_object_as_read(client):
    """T2/T6/B1/B2/B5/C1/C2/R2/R3/D3: a whole life, then GET /v1/events: each change's events exactly once, in
    order, each `data.object` equal to what the resource's GET answered right after the change; the erasure
    leaves no name, e-mail or external id in any stored event."""
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice", email="alice@example.com")
    life = Life(client, alice)
    life.saw("customer.created", life.customer_now())
    assert alice == life.customer_now()

    ok(client.patch(f"/v1/customers/{alice['id']}", json={"name": "Alice Liddell"}, headers=customer_headers("alice")))
    life.saw("customer.updated", life.customer_now())

    trial = ok(
        client.post(
            "/v1/trials", json={"customer_id": alice["id"], "plan": "pro-monthly"}, headers=customer_headers("alice")
        ),
        201,
    )
    life.saw("trial.started", life.trial(trial["id"]))
    life.saw("access.changed", life.access_now())

    sub = buy(client, alice)  # T6: the running trial is forfeited by the purchase
    [first_payment] = life.payments()
    life.saw("trial.forfeited", life.trial(trial["id"]))
    life.saw("subscription.activated", subscription(client, sub["id"]))
    life.saw("payment.succeeded", first_payment)
    life.saw("access.changed", life.access_now())
    assert life.trial(trial["id"])["status"] == "forfeited" and life.access_now()["source"] == "subscription"

    credit = ok(
        client.post(
            f"/v1/customers/{alice['id']}/credits",
            json={"amount": 500, "currency": "usd", "reason": "goodwill"},
            headers=ops_headers(),
        ),
        201,
    )
    life.saw("credit.granted", credit)
    refund = ok(
        client.post(
            f"/v1/payments/{first_payment['id']}/refunds",
            json={"amount": 100, "reason": "goodwill"},
            headers=ops_headers(),
        ),
        201,
    )
    assert refund["status"] == "succeeded"
    life.saw("refund.succeeded", get(client, f"/v1/payments/{first_payment['id']}/refunds")["data"][0])

    ok(client.post(f"/v1/subscriptions/{sub['id']}/cancel", headers=customer_headers("alice")))
    life.saw("subscription.cancellation_scheduled", subscription(client, sub["id"]))
    ok(client.post(f"/v1/subscriptions/{sub['id']}/resume", headers=customer_headers("alice")))
    life.saw("subscription.resumed", subscription(client, sub["id"]))

    move_clock(client, PERIOD_END)  # B2: renewed on the anchor, the credit spent (R2)
    assert run_due(client)["subscription_renewals"] == 1
    renewal = life.payments()[0]
    assert renewal["purpose"] == "renewal" and renewal["credit_applied"] == 500
    life.saw("subscription.renewed", subscription(client, sub["id"]))
    life.saw("payment.succeeded", renewal)  # a renewal of an active subscription leaves the access as it was

    move_clock(client, "2030-02-20T12:00:00Z")  # R3: suspended, then lifted
    ok(
        client.post(
            f"/v1/customers/{alice['id']}/suspend", json={"reason": "chargeback under review"}, headers=ops_headers()
        )
    )
    life.saw("customer.suspended", life.customer_now())
    life.saw("access.changed", life.access_now())
    assert life.access_now()["reason"] == "suspended"
    ok(client.post(f"/v1/customers/{alice['id']}/unsuspend", json={"reason": "resolved"}, headers=ops_headers()))
    life.saw("customer.unsuspended", life.customer_now())
    life.saw("access.changed", life.access_now())
    assert life.access_now()["reason"] == "subscription_active"

    switch_method(client, sub, "pm_card_chargeDeclined")  # B5: the next renewal fails, then its three retries
    move_clock(client, SECOND_PERIOD_END)
    assert run_due(client)["subscription_renewals"] == 1
    life.saw("payment.failed", life.payments()[0])
    life.saw("subscription.past_due", subscription(client, sub["id"]))
    life.saw("access.changed", life.access_now())
    assert life.access_now()["reason"] == "subscription_past_due"
    for retry_at in (RETRY_1, RETRY_2):
        move_clock(client, retry_at)
        assert run_due(client)["subscription_retries"] == 1
        life.saw("payment.failed", life.payments()[0])  # still past_due, the access unchanged
    move_clock(client, RETRY_3)
    assert run_due(client)["subscription_retries"] == 1
    life.saw("payment.failed", life.payments()[0])
    life.saw("subscription.ended", subscription(client, sub["id"]))
    life.saw("access.changed", life.access_now())
    assert subscription(client, sub["id"])["ended_reason"] == "payment_failed"
    assert life.access_now()["has_access"] is False

    again = buy(client, alice)  # B1: bought again, then R3: terminated, which ends it at once
    life.saw("subscription.activated", subscription(client, again["id"]))
    life.saw("payment.succeeded", life.payments()[0])
    life.saw("access.changed", life.access_now())
    ok(client.post(f"/v1/customers/{alice['id']}/terminate", json={"reason": "fraud"}, headers=ops_headers()))
    life.saw("customer.terminated", life.customer_now())
    life.saw("access.changed", life.access_now())
    life.saw("subscription.ended", subscription(client, again["id"]))

    assert life.recorded() == life.expected
    for event in events_of(client, alice["id"]):
        assert "." not in event["id"] and event["id"].startswith("evt_")
        assert event["object"] == "event" and event["customer_id"] == alice["id"]
        assert event["timestamp"] == event["created_at"]
        assert get(client, f"/v1/events/{event['id']}") == event
    assert [e["type"] for e in events_of(client, type="subscription.ended")] == ["subscription.ended"] * 2

    ok(client.delete(f"/v1/customers/{alice['id']}", headers=ops_headers()))  # D3
    life.saw("customer.erased", life.customer_now())
    life.saw("access.changed", life.access_now())
    recorded = life.recorded()
    assert [t for t, _ in recorded] == [t for t, _ in life.expected]
    assert recorded[-2:] == life.expected[-2:]
    text_of_events = str(events_of(client, alice["id"])).lower()
    assert "alice" not in text_of_events
    assert all(
        obj["name"] is None and obj["email"] is None and obj["external_id"] is None
        for t, obj in recorded
        if obj["object"] == "customer"
    )


def test_T3_T4_a_trial_that_runs_out_records_its_notice_and_its_expiry(client):
    """T4: `trial.expiring` when its notice is queued; T3: `trial.expired` at its end, and the access it ends."""
    make_plan(client)
    bob = make_customer(client, "bob")
    life = Life(client, bob)
    life.saw("customer.created", life.customer_now())
    trial = ok(
        client.post(
            "/v1/trials", json={"customer_id": bob["id"], "plan": "pro-monthly"}, headers=customer_headers("bob")
        ),
        201,
    )
    life.saw("trial.started", life.trial(trial["id"]))
    life.saw("access.changed", life.access_now())
    move_clock(client, trial["notice_at"])
    run_due(client)
    life.saw("trial.expiring", life.trial(trial["id"]))
    move_clock(client, trial["ends_at"])
    run_due(client)
    assert life.trial(trial["id"])["status"] == "expired"
    life.saw("trial.expired", life.trial(trial["id"]))
    life.saw("access.changed", life.access_now())
    assert life.access_now()["reason"] == "no_subscription"
    run_due(client)  # nothing more happens, nothing more is recorded
    assert life.recorded() == life.expected


def test_B1_a_refused_request_records_nothing_and_a_declined_purchase_only_its_failed_payment(client):
    """B1: a declined purchase records `payment.failed`, never `subscription.activated` nor any access change;
    a 409, a 422 and a request that changes nothing record no event."""
    make_plan(client)
    carol = make_customer(client, "carol")
    declined = purchase(client, carol, payment_method="pm_card_chargeDeclined")
    assert declined.status_code == 402, declined.text
    [failed] = get(client, f"/v1/customers/{carol['id']}/payments")["data"]
    assert [(e["type"], e["data"]["object"]) for e in events_of(client, carol["id"])] == [
        ("customer.created", carol),
        ("payment.failed", failed),
    ]

    sub = buy(client, carol)
    before = events_of(client, carol["id"])
    assert [e["type"] for e in before[2:]] == ["subscription.activated", "payment.succeeded", "access.changed"]
    assert purchase(client, carol).status_code == 409  # one live subscription per customer
    assert (
        client.post(
            f"/v1/customers/{carol['id']}/credits", json={"amount": 100, "currency": "eur"}, headers=ops_headers()
        ).status_code
        == 422
    )  # R2: not the billing currency
    assert (
        client.post(f"/v1/subscriptions/{sub['id']}/resume", headers=customer_headers("carol")).status_code == 200
    )  # nothing to resume: no change
    assert (
        client.post(
            "/v1/customers",
            json={"email": "x@example.com", "name": "X", "country": "US"},
            headers=customer_headers("carol"),
        ).status_code
        == 409
    )  # customer_exists
    assert events_of(client, carol["id"]) == before
    assert len(events_of(client)) == len(before)


_FAIL_AFTER_RECORDING = {
    # R3: a termination records the customer's events first, then ends everything, forfeiting the credit: the
    # forfeit is refused, so the termination fails after its events were written.
    "sqlite": [
        """CREATE TRIGGER refuse_forfeit BEFORE INSERT ON credit_entries WHEN NEW.kind = 'forfeit'
               BEGIN SELECT RAISE(ABORT, 'forfeit refused by the test'); END"""
    ],
    "postgresql": [
        """CREATE FUNCTION refuse_forfeit() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN RAISE EXCEPTION 'forfeit refused by the test'; END $$""",
        """CREATE TRIGGER refuse_forfeit BEFORE INSERT ON credit_entries FOR EACH ROW
                   WHEN (NEW.kind = 'forfeit') EXECUTE FUNCTION refuse_forfeit()""",
    ],
}
_UNDO = {
    "sqlite": ["DROP TRIGGER IF EXISTS refuse_forfeit"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS refuse_forfeit ON credit_entries",
        "DROP FUNCTION IF EXISTS refuse_forfeit()",
    ],
}


def _run(url: str, statements: list[str]) -> None:
    async def go() -> None:
        db = Database(url, pool_size=1)
        try:
            async with db.transaction() as conn:
                for statement in statements:
                    await conn.execute(text(statement))
        finally:
            await db.dispose()

    asyncio.run(go())


@pytest.fixture
def forfeit_refused(clean_db: str):
    kind = "postgresql" if clean_db.startswith("postgresql") else "sqlite"
    _run(clean_db, _FAIL_AFTER_RECORDING[kind])
    try:
        yield
    finally:
        _run(clean_db, _UNDO[kind])


def test_R3_a_change_that_fails_after_recording_its_events_leaves_no_event(client, forfeit_refused):
    """R3: the termination writes `customer.terminated` and `access.changed`, then fails (the credit forfeit is
    refused): the transaction rolls back whole, so neither the change nor its events exist."""
    make_plan(client)
    dave = make_customer(client, "dave")
    ok(
        client.post(
            f"/v1/customers/{dave['id']}/credits",
            json={"amount": 500, "currency": "usd", "reason": "goodwill"},
            headers=ops_headers(),
        ),
        201,
    )
    before = events_of(client, dave["id"])
    assert [e["type"] for e in before] == ["customer.created", "credit.granted"]
    failed = client.post(f"/v1/customers/{dave['id']}/terminate", json={"reason": "fraud"}, headers=ops_headers())
    assert failed.status_code >= 500, failed.text
    assert get(client, f"/v1/customers/{dave['id']}")["status"] == "active"
    assert events_of(client, dave["id"]) == before
    audit = get(client, f"/v1/audit-events?customer_id={dave['id']}")["data"]
    assert "customer.terminated" not in [a["action"] for a in audit]


def test_events_are_ops_only_and_an_unknown_id_is_404(client):
    erin = make_customer(client, "erin")
    assert client.get("/v1/events", headers=customer_headers("erin")).status_code == 403
    [created] = events_of(client, erin["id"])
    assert client.get(f"/v1/events/{created['id']}", headers=customer_headers("erin")).status_code == 403
    missing = client.get("/v1/events/evt_00000000000000000000000000", headers=ops_headers())
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert events_of(client, type="customer.created") == [created]
    assert events_of(client, type="customer.updated") == []
    assert created["created_at"] >= START


def test_B1_an_abandoned_purchase_records_its_failed_payment_and_no_subscription_event(client):
    """B1: a purchase waiting for the customer's action that is cancelled, or that expires after a day, began
    nothing: its payment's failure is recorded (`payment.failed`), and no subscription or access event."""
    make_plan(client)
    for who, abandon in (("frank", "cancel"), ("gina", "expire")):
        customer = make_customer(client, who)
        sub = buy(client, customer, payment_method="pm_card_authenticationRequired")
        assert sub["status"] == "incomplete"
        if abandon == "cancel":
            ok(client.post(f"/v1/subscriptions/{sub['id']}/cancel", headers=customer_headers(who)))
        else:
            move_clock(client, "2030-01-16T12:00:00Z")  # 24 h later: expired after 23 h
            assert run_due(client)["incomplete_purchase_expiry"] == 1
        [payment] = get(client, f"/v1/customers/{customer['id']}/payments")["data"]
        assert payment["status"] == "failed"
        assert [(e["type"], e["data"]["object"]) for e in events_of(client, customer["id"])] == [
            ("customer.created", customer),
            ("payment.failed", payment),
        ]


def test_B2_T3_scheduled_batches_write_their_events_in_one_insert_per_batch(client):
    """B2/T3: a renewal batch and a trial expiry batch write every event of the batch in one multi-row insert, not
    a statement per subscription or trial."""
    from sqlalchemy import event

    make_plan(client)
    people = [make_customer(client, f"batch{i}") for i in range(4)]
    for person in people[:2]:
        buy(client, person)
    for person in people[2:]:
        ok(
            client.post(
                "/v1/trials",
                json={"customer_id": person["id"], "plan": "pro-monthly"},
                headers=customer_headers(person["external_id"]),
            ),
            201,
        )
    inserts: list[int] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO EVENTS"):
            inserts.append(len(parameters) if executemany else 1)

    engine = client.app.state.ctx.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        move_clock(client, "2030-02-14T12:00:00Z")  # the trials end (30 days), their notices were due before
        jobs = run_due(client)
        assert jobs["trial_expiry"] == 2 and jobs["trial_expiring_notices"] == 0
        assert inserts == [4]  # one statement: trial.expired and access.changed of both trials
        inserts.clear()
        move_clock(client, PERIOD_END)
        assert run_due(client)["subscription_renewals"] == 2
        assert inserts == [6]  # one statement: subscription.renewed, payment.succeeded and invoice.issued of both
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert [e["type"] for e in events_of(client, type="subscription.renewed")] == ["subscription.renewed"] * 2


def test_B1_R2_what_stripe_reports_records_its_events_too(client, settings):
    """B1: a purchase completed by a signed `payment_intent.succeeded` records its activation as a direct one
    does; R2: a refund made in Stripe's dashboard (`charge.refunded`) records `refund.succeeded`."""
    from tests.support.webhooks import event, intent_event, post_event

    make_plan(client)
    hana = make_customer(client, "hana")
    sub = buy(client, hana, payment_method="pm_card_authenticationRequired")
    [pending] = get(client, f"/v1/customers/{hana['id']}/payments")["data"]
    paid = post_event(
        client,
        intent_event("payment_intent.succeeded", pending["gateway_payment_id"], amount=2000),
        settings.stripe_webhook_secret,
    )
    assert paid.json()["outcome"] == "applied", paid.text
    [payment] = get(client, f"/v1/customers/{hana['id']}/payments")["data"]
    expected = [
        ("customer.created", hana),
        ("subscription.activated", subscription(client, sub["id"])),
        ("payment.succeeded", payment),
        ("access.changed", get(client, f"/v1/customers/{hana['id']}/access")),
    ]
    charge = {
        "id": "ch_hana",
        "object": "charge",
        "amount": 2000,
        "payment_intent": payment["gateway_payment_id"],
        "refunds": {
            "object": "list",
            "data": [{"id": "re_hana_1", "object": "refund", "amount": 300, "status": "succeeded", "metadata": {}}],
        },
    }
    refunded = post_event(client, event("charge.refunded", charge), settings.stripe_webhook_secret)
    assert refunded.json()["outcome"] == "applied", refunded.text
    [refund] = get(client, f"/v1/payments/{payment['id']}/refunds")["data"]
    expected.append(("refund.succeeded", refund))
    assert [(e["type"], e["data"]["object"]) for e in events_of(client, hana["id"])] == expected


def test_D1_the_export_holds_the_customers_events(client):
    """D1: the events hold the customer's details (their snapshots): the export gives them, oldest first."""
    make_plan(client)
    ivy = make_customer(client, "ivy")
    buy(client, ivy)
    exported = get(client, f"/v1/customers/{ivy['id']}/export")
    assert exported["events"] == events_of(client, ivy["id"], documents=True)
    assert [e["type"] for e in exported["events"]] == [
        "customer.created",
        "subscription.activated",
        "payment.succeeded",
        "access.changed",
        "invoice.issued",
    ]


def test_B1_a_success_applied_from_a_stale_failure_event_records_the_purchase_events(client, settings):
    """B1: the customer's retry succeeded at the gateway and Stripe delivers the first attempt's `payment_failed`
    first; the intent's state decides (outcome `succeeded_at_gateway`): the purchase records the events of an
    ordinary success (subscription.activated, payment.succeeded, access.changed), and no payment.failed."""
    from tests.support.webhooks import intent_event, post_event

    make_plan(client, amount=2000)
    jude = make_customer(client, "jude")
    sub = buy(client, jude, payment_method="pm_card_authenticationRequired")
    [pending] = get(client, f"/v1/customers/{jude['id']}/payments")["data"]
    client.portal.call(client.app.state.ctx.gateway.complete_action, pending["gateway_payment_id"])
    stale = post_event(
        client,
        intent_event(
            "payment_intent.payment_failed",
            pending["gateway_payment_id"],
            amount=2000,
            decline_code="authentication_failed",
        ),
        settings.stripe_webhook_secret,
    )
    assert stale.json()["outcome"] == "succeeded_at_gateway", stale.text
    [payment] = get(client, f"/v1/customers/{jude['id']}/payments")["data"]
    assert payment["status"] == "succeeded"
    assert [(e["type"], e["data"]["object"]) for e in events_of(client, jude["id"])] == [
        ("customer.created", jude),
        ("subscription.activated", subscription(client, sub["id"])),
        ("payment.succeeded", payment),
        ("access.changed", get(client, f"/v1/customers/{jude['id']}/access")),
    ]


def test_C1_B2_B5_a_declined_renewal_after_a_gap_cancellation_records_the_subscription_ended(client):
    """C1/B2/B5: a cancellation asked in the renewal gap, then the due renewal is declined: the subscription ends
    at the failure (`failure_with_cancellation`), and that ending is recorded as any other: payment.failed,
    subscription.ended and access.changed, each as its GET shows it."""
    from tests.api.test_dunning import declining_subscription

    kate, sub = declining_subscription(client)
    move_clock(client, "2030-02-16T00:00:00Z")  # period end + 12 h: in the gap
    ok(client.post(f"/v1/subscriptions/{sub['id']}/cancel", headers=customer_headers("alice")))
    move_clock(client, "2030-02-16T01:00:00Z")
    assert run_due(client)["subscription_renewals"] == 1
    ended = subscription(client, sub["id"])
    assert ended["status"] == "canceled" and ended["ended_reason"] == "canceled"
    renewal = get(client, f"/v1/customers/{kate['id']}/payments")["data"][0]
    assert renewal["purpose"] == "renewal" and renewal["status"] == "failed"
    assert [(e["type"], e["data"]["object"]) for e in events_of(client, kate["id"])][-3:] == [
        ("payment.failed", renewal),
        ("subscription.ended", ended),
        ("access.changed", get(client, f"/v1/customers/{kate['id']}/access")),
    ]


def test_D3_erasure_of_a_common_name_keeps_the_events_statuses_ids_and_codes(client):
    """D3: the erasure scrubs stored events as stored responses are scrubbed (policies.erase_from_response, whole
    tokens): a customer named "Active Pro" whose token `sub` is "7" is erased; their events lose the name, e-mail
    and external id, but every status ("active"), plan code ("pro-monthly"), id and timestamp stays as recorded."""
    make_plan(client, amount=2000)
    created = client.post(
        "/v1/customers",
        json={"email": "ap@example.org", "name": "Active Pro", "country": "US"},
        headers=customer_headers("7"),
    )
    ap = ok(created, 201)
    sub = buy(client, ap)
    credit = ok(
        client.post(
            f"/v1/customers/{ap['id']}/credits",
            json={"amount": 300, "currency": "usd", "reason": "Active Pro asked on 2030-01-15"},
            headers=ops_headers(),
        ),
        201,
    )
    before = events_of(client, ap["id"])
    assert next(e["data"]["object"] for e in before if e["type"] == "subscription.activated")["status"] == "active"
    ok(client.delete(f"/v1/customers/{ap['id']}", headers=ops_headers()))
    after = events_of(client, ap["id"])[: len(before)]
    assert [e["id"] for e in after] == [e["id"] for e in before]
    for old, new in zip(before, after, strict=True):
        obj = dict(old["data"]["object"])
        if obj["object"] == "customer":
            obj.update(email=None, name=None, external_id=None, country=None)
        if obj["object"] == "credit":
            assert obj["id"] == credit["id"]
            obj["reason"] = "[erased] asked on 2030-01-15"
        assert new == {**old, "data": {"object": obj}}, old["type"]
    activated = next(e for e in after if e["type"] == "subscription.activated")["data"]["object"]
    assert activated["status"] == "active" and activated["plan"] == "pro-monthly" and activated["id"] == sub["id"]
    assert "active pro" not in str(after).lower() and "ap@example.org" not in str(after)
