"""Personal data rights through HTTP: export (D1), correction (D2), erasure that keeps the books (D3), marketing
objection (D4), and no personal data in the logs."""

from __future__ import annotations

import logging

from tests.api.test_ops_actions import buy, payments_of, refund
from tests.api.test_trials import start_trial
from tests.conftest import customer_headers, make_customer, make_plan, move_clock, ops_headers, run_due

EMAIL = "Grace.Hopper@Example.com"
NAME = "Grace Hopper"


def _customer(client, sub: str = "grace") -> dict:
    response = client.post(
        "/v1/customers", json={"email": EMAIL, "name": NAME, "country": "US"}, headers=customer_headers(sub)
    )
    assert response.status_code == 201
    return response.json()


def test_D1_export_contains_everything_held(client):
    make_plan(client, amount=2000)
    grace = _customer(client)
    trial = start_trial(client, grace).json()
    sub = buy(client, grace)
    [payment] = payments_of(client, grace)
    refund(client, payment["id"], 100, "goodwill")
    client.post(
        f"/v1/customers/{grace['id']}/credits",
        json={"amount": 50, "currency": "usd", "reason": "sorry"},
        headers=ops_headers(),
    )
    run_due(client)
    export = client.get(f"/v1/customers/{grace['id']}/export", headers=customer_headers("grace"))
    assert export.status_code == 200
    doc = export.json()
    assert doc["schema_version"] == 1 and doc["object"] == "customer_export"
    assert doc["customer"]["email"] == EMAIL and doc["customer"]["name"] == NAME
    assert [t["id"] for t in doc["trials"]] == [trial["id"]] and doc["trials"][0]["status"] == "forfeited"
    assert [s["id"] for s in doc["subscriptions"]] == [sub["id"]]
    assert [p["id"] for p in doc["payments"]] == [payment["id"]]
    assert [r["amount"] for r in doc["refunds"]] == [100]
    assert [c["amount"] for c in doc["credits"]] == [50]
    assert {n["type"] for n in doc["notices"]} >= {"receipt"} and all(n["body"] for n in doc["notices"])
    assert {"customer.created", "trial.started", "refund.requested"} <= {e["action"] for e in doc["audit_events"]}
    # Customers get their own export only; ops get any.
    make_customer(client, "other")
    assert client.get(f"/v1/customers/{grace['id']}/export", headers=customer_headers("other")).status_code == 404
    assert client.get(f"/v1/customers/{grace['id']}/export", headers=ops_headers()).status_code == 200


def test_D2_correction_is_audited_without_the_values(client):
    grace = _customer(client)
    response = client.patch(
        f"/v1/customers/{grace['id']}",
        json={"email": "grace@navy.example", "name": "G. Hopper", "country": "GB"},
        headers=customer_headers("grace"),
    )
    assert response.status_code == 200
    assert response.json()["email"] == "grace@navy.example" and response.json()["country"] == "GB"
    events = client.get(
        f"/v1/audit-events?customer_id={grace['id']}&action=customer.updated", headers=ops_headers()
    ).json()["data"]
    assert events[0]["data"] == {"fields": ["country", "email", "name"]}
    assert "navy" not in str(events) and "Hopper" not in str(events)


def test_D3_T5_erasure_keeps_the_books_and_the_trial_once_rule(client):
    make_plan(client, amount=2000)
    grace = _customer(client)
    start_trial(client, grace)
    # D2 then D3: every address the person ever used stays barred from a second trial.
    client.patch(
        f"/v1/customers/{grace['id']}", json={"email": "second@example.com"}, headers=customer_headers("grace")
    )
    sub = buy(client, grace)
    [payment] = payments_of(client, grace)
    erased = client.delete(f"/v1/customers/{grace['id']}", headers=customer_headers("grace"))
    assert erased.status_code == 200
    body = erased.json()
    assert body["status"] == "erased" and body["email"] is None and body["name"] is None
    assert body["external_id"] is None and body["country"] is None
    # Access ends at once; nothing refunded.
    ended = client.get(f"/v1/subscriptions/{sub['id']}", headers=ops_headers()).json()
    assert ended["status"] == "canceled" and ended["ended_reason"] == "erased"
    assert client.get(f"/v1/customers/{grace['id']}/access", headers=ops_headers()).json()["has_access"] is False
    kept = client.get(f"/v1/payments/{payment['id']}", headers=ops_headers()).json()
    assert kept["amount"] == 2000 and kept["refunded_amount"] == 0 and kept["tax_amount"] == 0
    # Nothing readable is left: notices and the audit log hold no name or e-mail, the token's id is pseudonymised.
    export = client.get(f"/v1/customers/{grace['id']}/export", headers=ops_headers()).json()
    text = str(export).lower()
    assert "grace" not in text and "hopper" not in text and "second@" not in text
    assert all(e["actor"] != "grace" for e in export["audit_events"])
    # Idempotent: erasing again changes nothing.
    again = client.delete(f"/v1/customers/{grace['id']}", headers=ops_headers())
    assert again.status_code == 200 and again.json() == body
    # T5 survives erasure: a new account with either old address is refused a trial.
    for sub_id, email in (("grace-new", EMAIL.upper()), ("grace-2", " second@example.com ")):
        fresh = make_customer(client, sub_id, email=email)
        assert start_trial(client, fresh).json()["code"] == "trial_not_eligible"
    # The erased person's token no longer reaches anything.
    assert client.get(f"/v1/customers/{grace['id']}", headers=customer_headers("grace")).status_code == 404


def test_D4_marketing_objection_service_notices_still_sent(client):
    make_plan(client)
    grace = _customer(client)
    opted = client.patch(
        f"/v1/customers/{grace['id']}", json={"marketing_opt_out": True}, headers=customer_headers("grace")
    )
    assert opted.json()["marketing_opt_out"] is True
    for category in ("marketing", "service"):
        response = client.post(
            f"/v1/customers/{grace['id']}/messages",
            json={"category": category, "subject": f"{category} news", "body": "Hello"},
            headers=ops_headers(),
        )
        assert response.status_code == 201
    assert (
        client.post(
            f"/v1/customers/{grace['id']}/messages",
            json={"category": "marketing", "subject": "x", "body": "y"},
            headers=customer_headers("grace"),
        ).status_code
        == 403
    )
    trial = start_trial(client, grace).json()
    move_clock(client, trial["notice_at"])
    run_due(client)
    notices = client.get(f"/v1/customers/{grace['id']}/notices", headers=customer_headers("grace")).json()["data"]
    status = {n["subject"]: n["status"] for n in notices}
    assert status["marketing news"] == "skipped" and status["service news"] == "logged"
    assert [n["status"] for n in notices if n["type"] == "trial_expiring"] == ["logged"]


def test_no_personal_data_in_logs(client, caplog):
    from app.health.observability import JsonFormatter

    caplog.set_level(logging.DEBUG, logger="billing")
    caplog.set_level(logging.INFO)
    make_plan(client)
    grace = _customer(client)
    start_trial(client, grace)
    buy(client, grace)
    client.post(
        "/v1/customers", json={"email": EMAIL, "name": NAME, "country": "US"}, headers=customer_headers("grace")
    )  # a refused duplicate
    client.post(
        "/v1/customers", json={"email": "not-an-email", "name": NAME, "country": "US"}, headers=customer_headers("x")
    )
    move_clock(client, "2031-01-01T00:00:00Z")
    run_due(client)
    client.delete(f"/v1/customers/{grace['id']}", headers=customer_headers("grace"))
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    assert any('"route": "/v1/customers"' in line for line in lines)  # the flow was logged
    for line in lines:
        assert "grace.hopper" not in line.lower() and "Hopper" not in line and "not-an-email" not in line, line


ZQ_NAME = "Zebulon Quixote"
ZQ_EMAIL = "zebulon.q@example.org"
ZQ_EXTERNAL_ID = "ext-zq-4711"


# I3: invoices and credit notes are kept as issued, the buyer's name included (GDPR Art. 17(3)(b)): erasure leaves
# them unchanged, reachable by ops only (tests/api/test_invoices.py).
KEPT_AS_ISSUED = frozenset({"invoices", "credit_notes"})


async def _scan_every_table(database_url: str, needles: list[str]) -> list[str]:
    """Every column of every table of the database (found by introspection, not from the models), every row:
    where does any of `needles` occur (case-insensitively, JSON and binary columns read as text)?"""
    import json

    from sqlalchemy import MetaData, select

    from app.db import Database

    db = Database(database_url, pool_size=1)  # its own engine: the app's lives on another event loop
    found = []
    try:
        async with db.read() as conn:
            schema = MetaData()
            await conn.run_sync(lambda sync: schema.reflect(sync))
            assert {
                "customers",
                "refunds",
                "credit_entries",
                "idempotency_keys",
                "webhook_events",
                "audit_events",
                "notices",
            } <= set(schema.tables)
            for table in schema.sorted_tables:
                if table.name in KEPT_AS_ISSUED:
                    continue
                for row in (await conn.execute(select(table))).mappings():
                    for column, value in row.items():
                        if isinstance(value, bytes | bytearray | memoryview):
                            value = bytes(value).decode("utf-8", "replace")
                        elif isinstance(value, dict | list):
                            value = json.dumps(value, ensure_ascii=False)
                        value = str(value).casefold()
                        found += [
                            f"{table.name}.{column}: {needle!r}" for needle in needles if needle.casefold() in value
                        ]
    finally:
        await db.dispose()
    return found


def test_D3_erasure_leaves_no_name_email_or_external_id_in_any_table_and_the_books_add_up(
    client, settings, database_url
):
    """D3: after an erasure no copy of the person's name, e-mail or external id is left anywhere in the database
    (staff's free text in refund and credit reasons, the credit forfeited by the erasure, ops callers' stored
    idempotent responses, the Stripe webhook inbox, notices, audit), while payments and refunds stay whole."""
    import asyncio

    from tests.support.webhooks import event, intent_event, post_event

    make_plan(client, amount=2000)
    me = customer_headers(ZQ_EXTERNAL_ID)
    created = client.post(
        "/v1/customers",
        json={"email": ZQ_EMAIL, "name": ZQ_NAME, "country": "US"},
        headers={**me, "Idempotency-Key": "signup-1"},
    )
    assert created.status_code == 201, created.text
    zq = created.json()
    cid = zq["id"]
    start_trial(client, zq)
    # A purchase that needs 3-D Secure, completed by Stripe's signed webhook whose payload names the person.
    sub = client.post(
        "/v1/subscriptions",
        json={"customer_id": cid, "plan": "pro-monthly", "payment_method": "pm_card_authenticationRequired"},
        headers={**me, "Idempotency-Key": "buy-1"},
    ).json()
    [purchase] = payments_of(client, zq)
    evt = intent_event("payment_intent.succeeded", purchase["gateway_payment_id"], amount=2000)
    charge = {
        "id": "ch_zq_1",
        "object": "charge",
        "payment_intent": purchase["gateway_payment_id"],
        "receipt_email": ZQ_EMAIL,
        "billing_details": {"email": ZQ_EMAIL, "name": ZQ_NAME, "phone": None, "address": {"country": "US"}},
    }
    evt["data"]["object"].update(receipt_email=ZQ_EMAIL, latest_charge=charge)
    assert post_event(client, evt, settings.stripe_webhook_secret).json()["outcome"] == "applied"
    sub = client.get(f"/v1/subscriptions/{sub['id']}", headers=ops_headers()).json()
    assert sub["status"] == "active"
    # A renewal (on a card that needs no action off-session).
    assert (
        client.post(
            f"/v1/subscriptions/{sub['id']}/payment-method", json={"payment_method": "pm_card_visa"}, headers=me
        ).status_code
        == 200
    )
    move_clock(client, sub["current_period_end"])
    run_due(client)
    payments = payments_of(client, zq)
    assert sorted(p["purpose"] for p in payments if p["status"] == "succeeded") == ["purchase", "renewal"]
    # A refund made in Stripe's dashboard: its `charge.refunded` event names the person too.
    [renewal] = [p for p in payments if p["purpose"] == "renewal"]
    dashboard_refund = {
        **charge,
        "id": "ch_zq_2",
        "amount": renewal["amount"],
        "payment_intent": renewal["gateway_payment_id"],
        "refunds": {
            "object": "list",
            "data": [{"id": "re_zq_1", "object": "refund", "amount": 100, "status": "succeeded", "metadata": {}}],
        },
    }
    refunded_in_stripe = event("charge.refunded", dashboard_refund)
    assert post_event(client, refunded_in_stripe, settings.stripe_webhook_secret).json()["outcome"] == "applied"
    # Ops: a refund and a credit whose reasons name the person, a suspension and its lifting, all idempotent.
    ops = ops_headers()
    refunded = client.post(
        f"/v1/payments/{purchase['id']}/refunds",
        headers={**ops, "Idempotency-Key": "rf-1"},
        json={"amount": 700, "reason": f"{ZQ_NAME} <{ZQ_EMAIL}> was charged twice"},
    )
    assert refunded.status_code == 201, refunded.text
    credited = client.post(
        f"/v1/customers/{cid}/credits",
        headers={**ops, "Idempotency-Key": "cr-1"},
        json={
            "amount": 300,
            "currency": "usd",
            "reason": f"call from ZEBULON QUIXOTE ({ZQ_EXTERNAL_ID.upper()}), apologised",
        },
    )
    assert credited.status_code == 201, credited.text
    for action, key in (("suspend", "sp-1"), ("unsuspend", "us-1")):
        response = client.post(
            f"/v1/customers/{cid}/{action}",
            json={"reason": f"{ZQ_NAME} asked for it"},
            headers={**ops, "Idempotency-Key": key},
        )
        assert response.status_code == 200 and response.json()["email"] == ZQ_EMAIL
    run_due(client)
    assert {n["type"] for n in client.get(f"/v1/customers/{cid}/notices", headers=ops).json()["data"]} >= {"receipt"}
    needles = [ZQ_NAME, ZQ_EMAIL, ZQ_EXTERNAL_ID]
    assert asyncio.run(_scan_every_table(database_url, needles))  # the scan sees them before the erasure

    def refund_books() -> dict:
        return {
            r["id"]: (r["payment_id"], r["amount"], r["status"])
            for p in payments_of(client, zq)
            for r in client.get(f"/v1/payments/{p['id']}/refunds", headers=ops).json()["data"]
        }

    books = {p["id"]: (p["amount"], p["refunded_amount"], p["status"]) for p in payments_of(client, zq)}
    refunds_before = refund_books()
    assert sorted(amount for _, amount, _ in refunds_before.values()) == [100, 700]

    assert client.delete(f"/v1/customers/{cid}", headers=me).status_code == 200

    left = asyncio.run(_scan_every_table(database_url, [*needles, "zebulon", "quixote"]))
    assert left == [], "\n".join(left)
    # The books still add up: the same payments, refunds and totals, each refund where it was.
    after = payments_of(client, zq)
    assert {p["id"]: (p["amount"], p["refunded_amount"], p["status"]) for p in after} == books
    assert refund_books() == refunds_before
    for payment in after:
        refunds = client.get(f"/v1/payments/{payment['id']}/refunds", headers=ops).json()["data"]
        assert sum(r["amount"] for r in refunds if r["status"] == "succeeded") == payment["refunded_amount"]
    [kept_refund] = client.get(f"/v1/payments/{purchase['id']}/refunds", headers=ops).json()["data"]
    assert kept_refund["amount"] == 700 and kept_refund["reason"] == "[erased] <[erased]> was charged twice"
    credits = client.get(f"/v1/customers/{cid}/credits", headers=ops).json()
    grant = next(c for c in credits["data"] if c["kind"] == "grant")
    assert grant["reason"] == "call from [erased] ([erased]), apologised" and grant["created_by"] == "staff-1"
    forfeit = next(c for c in credits["data"] if c["kind"] == "forfeit")
    assert forfeit["amount"] == -300 and forfeit["created_by"].startswith("erased:")
    # The ops callers' replays no longer carry the person; the webhook inbox still knows the event (dedupe).
    replay = client.post(
        f"/v1/customers/{cid}/suspend",
        json={"reason": f"{ZQ_NAME} asked for it"},
        headers={**ops, "Idempotency-Key": "sp-1"},
    )
    assert replay.status_code == 200 and replay.headers.get("idempotent-replayed") == "true"
    assert replay.json()["id"] == cid and replay.json()["email"] is None
    for delivered in (evt, refunded_in_stripe):
        again = post_event(client, delivered, settings.stripe_webhook_secret)
        assert again.status_code == 200 and again.json()["duplicate"] is True


AP_SUB, AP_NAME, AP_EMAIL, AP_OLD_EMAIL = "7", "Active Pro", "ap@example.org", "old.ap@example.org"


def _whole_token(value: str) -> str:
    import re

    return rf"(?<![\w@+.-]){re.escape(value)}(?![\w@+-])"


async def _scan_for_tokens(database_url: str, needles: list[str]) -> list[str]:
    """Like `_scan_every_table`, for needles too short to look for as substrings ("7" is in every timestamp): where
    does any of them occur as a whole token (not inside an id, a date or a number)?"""
    import json
    import re

    from sqlalchemy import MetaData, select

    from app.db import Database

    db = Database(database_url, pool_size=1)
    found = []
    try:
        async with db.read() as conn:
            schema = MetaData()
            await conn.run_sync(lambda sync: schema.reflect(sync))
            for table in schema.sorted_tables:
                if table.name in KEPT_AS_ISSUED:
                    continue
                for row in (await conn.execute(select(table))).mappings():
                    for column, value in row.items():
                        if value is None or isinstance(value, bool | int | float):
                            continue  # a number is not a token of text ("amount": 7 is not the person)
                        if isinstance(value, bytes | bytearray | memoryview):
                            value = bytes(value).decode("utf-8", "replace")
                        elif isinstance(value, dict | list):
                            value = json.dumps(value, ensure_ascii=False)
                        value = str(value)
                        found += [
                            f"{table.name}.{column}: {needle!r} in {value[:200]!r}"
                            for needle in needles
                            if re.search(_whole_token(needle), value, flags=re.IGNORECASE)
                        ]
    finally:
        await db.dispose()
    return found


def test_D3_erasure_of_a_short_id_and_a_common_name_keeps_replayed_ids_dates_and_codes(client, settings, database_url):
    """D3: a customer whose token `sub` is "7" and whose name is "Active Pro" is erased: no copy of the name, the
    e-mails (the current one and one corrected before, D2) or the external id is left anywhere, the Stripe
    `customer.*` and `payment_method.*` events about their gateway customer included, while the ops callers'
    replayed responses keep every id, timestamp, status and plan code exactly as first answered (only the personal
    fields and the free text naming the person change)."""
    import asyncio

    from tests.support.webhooks import event, intent_event, post_event

    make_plan(client, amount=2000)
    me = customer_headers(AP_SUB)
    created = client.post("/v1/customers", json={"email": AP_OLD_EMAIL, "name": AP_NAME, "country": "US"}, headers=me)
    assert created.status_code == 201, created.text
    ap = created.json()
    cid = ap["id"]
    assert client.patch(f"/v1/customers/{cid}", json={"email": AP_EMAIL}, headers=me).status_code == 200
    sub = buy(client, ap)
    [payment] = payments_of(client, ap)
    # Stripe tells us about the gateway customer and its card: both events carry the name and the e-mail.
    gateway_customer = f"cus_sandbox_{cid}"
    stripe_customer = {
        "id": gateway_customer,
        "object": "customer",
        "email": AP_EMAIL,
        "name": AP_NAME,
        "metadata": {"billing_customer_id": cid},
    }
    card = {
        "id": "pm_ap_1",
        "object": "payment_method",
        "customer": gateway_customer,
        "type": "card",
        "billing_details": {"email": AP_EMAIL, "name": AP_NAME, "address": {"country": "US"}},
    }
    # A payment taken in Stripe's dashboard, not by the service: an event it acts on, about an intent it does not
    # know, linked to the person only by the gateway customer (and naming them).
    dashboard = intent_event("payment_intent.succeeded", "pi_dashboard_ap", amount=500)
    dashboard["data"]["object"].update(customer=gateway_customer, receipt_email=AP_EMAIL)
    delivered = [event("customer.updated", stripe_customer), event("payment_method.attached", card), dashboard]
    for evt in delivered:
        assert post_event(client, evt, settings.stripe_webhook_secret).status_code == 200
    # Ops act with idempotency keys; what staff type names the person (and the address they used before, D2).
    ops = ops_headers()
    reason = f"{AP_NAME} <{AP_OLD_EMAIL}> asked on 2030-07-17 (ticket {AP_SUB}); pro-monthly kept"
    first = {
        "rf-7": client.post(
            f"/v1/payments/{payment['id']}/refunds",
            json={"amount": 700, "reason": reason},
            headers={**ops, "Idempotency-Key": "rf-7"},
        ),
        "cr-7": client.post(
            f"/v1/customers/{cid}/credits",
            json={"amount": 300, "currency": "usd", "reason": reason},
            headers={**ops, "Idempotency-Key": "cr-7"},
        ),
        "sp-7": client.post(
            f"/v1/customers/{cid}/suspend", json={"reason": reason}, headers={**ops, "Idempotency-Key": "sp-7"}
        ),
        "cn-7": client.post(f"/v1/subscriptions/{sub['id']}/cancel", headers={**ops, "Idempotency-Key": "cn-7"}),
    }
    assert [r.status_code for r in first.values()] == [201, 201, 200, 200], [r.text for r in first.values()]
    assert first["cn-7"].json()["plan"] == "pro-monthly" and first["sp-7"].json()["email"] == AP_EMAIL
    needles = [AP_NAME, AP_EMAIL, AP_OLD_EMAIL]
    assert asyncio.run(_scan_every_table(database_url, needles))  # the scans see them before the erasure
    assert asyncio.run(_scan_for_tokens(database_url, [AP_SUB]))

    assert client.delete(f"/v1/customers/{cid}", headers=me).status_code == 200

    left = asyncio.run(_scan_every_table(database_url, needles)) + asyncio.run(_scan_for_tokens(database_url, [AP_SUB]))
    assert left == [], "\n".join(left)
    erased_reason = "[erased] <[erased]> asked on 2030-07-17 (ticket [erased]); pro-monthly kept"
    personal = {"email", "name", "external_id", "country"}
    for key, original in first.items():
        path = original.request.url.path
        body = (
            {}
            if key == "cn-7"
            else {"amount": 700, "reason": reason}
            if key == "rf-7"
            else ({"amount": 300, "currency": "usd", "reason": reason} if key == "cr-7" else {"reason": reason})
        )
        replay = client.post(path, json=body or None, headers={**ops, "Idempotency-Key": key})
        assert replay.status_code == original.status_code and replay.headers.get("idempotent-replayed") == "true"
        before, after = original.json(), replay.json()
        assert set(after) == set(before), key
        for field, value in before.items():
            if field == "reason":
                assert after[field] == erased_reason, (key, after[field])
            elif field in personal and before.get("object") == "customer":
                assert after[field] is None, (key, field)
            else:  # ids, timestamps, statuses, codes and amounts: exactly as first answered
                assert after[field] == value, (key, field, value, after[field])
    # The inbox still knows the events (a repeated delivery is recognised).
    for evt in delivered:
        again = post_event(client, evt, settings.stripe_webhook_secret)
        assert again.status_code == 200 and again.json()["duplicate"] is True


def test_D3_an_event_the_service_does_not_act_on_is_kept_without_its_payload(client, settings, database_url):
    """D3 (data minimisation): a signed Stripe event of a type the service ignores (`customer.updated`, here about
    a gateway customer the service does not even know) names a person; the inbox keeps its id, type and outcome,
    so a repeated delivery is still recognised, but never the name or the e-mail: no later erasure could find them."""
    import asyncio

    from tests.support.webhooks import event, post_event

    stranger = {
        "id": "cus_stripe_zz",
        "object": "customer",
        "email": "zz.top@example.org",
        "name": "Zora Zeppelin",
        "metadata": {},
    }
    delivered = event("customer.updated", stranger)
    first = post_event(client, delivered, settings.stripe_webhook_secret)
    assert first.status_code == 200 and first.json()["outcome"] == "ignored", first.text
    left = asyncio.run(_scan_every_table(database_url, ["zz.top@example.org", "Zora Zeppelin"]))
    assert left == [], "\n".join(left)
    again = post_event(client, delivered, settings.stripe_webhook_secret)
    assert again.status_code == 200 and again.json()["duplicate"] is True
