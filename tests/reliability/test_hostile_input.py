"""Hostile input: schemathesis against the app's own OpenAPI document (in-process, ASGI), once with an ops token
and once with a customer token, then explicit cases: malformed JSON, oversized bodies, absurd amounts, unknown
currencies, absurd clock dates and unicode (emoji, RTL, NUL, 10k characters) in every string field.

Every refusal must be a clear 4xx `application/problem+json` (api.md: type, title, status, detail, code) and must
store nothing: each explicit case compares a snapshot of everything the API shows (audit log, plans, clock, the
customer's lists) before and after.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import START, _empty, customer_headers, make_settings, ops_headers
from tests.reliability.support import Api

PROBLEM_JSON = "application/problem+json"
# api.md "Conventions": RFC 9457 plus a stable machine `code`; validation errors list the offending fields.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "minLength": 1},
        "title": {"type": "string", "minLength": 1},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string", "pattern": "^[a-z][a-z_]*$"},
        "errors": {"type": "array", "items": {"type": "object", "required": ["field", "location", "message"]}},
    },
}
PROBLEM = jsonschema_rs.validator_for(PROBLEM_SCHEMA)  # checked as well as the document's own Problem schemas
MAX_EXAMPLES = 25
FUZZ_CUSTOMER = "fuzzer"
PLAN = {
    "code": "pro-monthly",
    "name": "Pro",
    "tier": "subscription",
    "interval": "month",
    "amount": 2000,
    "currency": "usd",
    "trial_available": True,
}


def _openapi() -> dict:
    """The document the app serves at /openapi.json (building it touches no database)."""
    from app.main import create_app

    return TestClient(create_app(make_settings("sqlite:///openapi-only.db"))).get("/openapi.json").json()


DOCUMENTED = _openapi()
# Fuzzed as served: every status a response has must be documented for its operation (status_code_conformance),
# and its body must match the documented schema (for refusals: the Problem / ValidationProblem components).
schema = schemathesis.openapi.from_dict(DOCUMENTED)
schema.config.generation.update(max_examples=MAX_EXAMPLES)


@pytest.fixture(scope="module")
def fuzz_app(database_url: str):
    from app.main import create_app

    return create_app(make_settings(database_url))


@pytest.fixture(params=["ops", "customer"])
def fuzz_target(request, fuzz_app, database_url: str) -> dict:
    """An empty database with a little real data, so that fuzzed requests can also reach existing objects."""
    spoil()
    asyncio.run(_empty(database_url))
    with schemathesis.python.asgi.get_client(fuzz_app) as http:

        def call(method: str, path: str, headers: dict, **kwargs: Any) -> dict:
            response = http.request(method, path, headers=headers, **kwargs)
            assert response.status_code in (200, 201), response.text
            return response.json()

        call("POST", "/v1/sandbox/clock", ops_headers(), json={"now": START})
        call("POST", "/v1/plans", ops_headers(), json=PLAN)
        me = customer_headers(FUZZ_CUSTOMER)
        customer = call(
            "POST", "/v1/customers", me, json={"email": "fuzz@example.com", "name": "Fuzz", "country": "US"}
        )
        sub = call(
            "POST",
            "/v1/subscriptions",
            me,
            json={"customer_id": customer["id"], "plan": PLAN["code"], "payment_method": "pm_card_visa"},
        )
        [payment] = call("GET", f"/v1/customers/{customer['id']}/payments", me)["data"]
        other = call(
            "POST",
            "/v1/customers",
            customer_headers("other"),
            json={"email": "other@example.com", "name": "Other", "country": "DE"},
        )
        trial = call(
            "POST", "/v1/trials", customer_headers("other"), json={"customer_id": other["id"], "plan": PLAN["code"]}
        )
    return {
        "role": request.param,
        "headers": ops_headers() if request.param == "ops" else me,
        "ids": {
            "customer_id": customer["id"],
            "subscription_id": sub["id"],
            "payment_id": payment["id"],
            "trial_id": trial["id"],
            "code": PLAN["code"],
            "plan": PLAN["code"],
        },
    }


@schema.parametrize()
@schema.given(use_real_ids=st.booleans())
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_fuzz_the_documented_api(case, use_real_ids: bool, fuzz_target: dict, fuzz_app) -> None:
    if use_real_ids:  # half of the examples name objects that exist (and that this caller may or may not see)
        ids = fuzz_target["ids"]
        for name in list(case.path_parameters or {}):
            if name in ids:
                case.path_parameters[name] = ids[name]
        if isinstance(case.body, dict):
            for name in ("customer_id", "plan"):
                if name in case.body:
                    case.body[name] = ids[name]
    response = case.call(app=fuzz_app, headers=fuzz_target["headers"])
    case.validate_response(
        response,
        checks=[not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance],
    )
    if 400 <= response.status_code < 500:
        [content_type] = response.headers.get("content-type", [""])
        assert content_type.startswith(PROBLEM_JSON), content_type
        body = response.json()
        assert not [e.message for e in PROBLEM.iter_errors(body)], body
        assert body["status"] == response.status_code and body["code"], body
        if body["code"] == "validation_error":
            assert response.status_code == 422 and body.get("errors"), body


def test_the_documented_422_matches_what_the_app_sends(world):
    response = world["client"].post("/v1/plans", json={"code": "x"}, headers=ops_headers())
    assert response.status_code == 422
    documented = DOCUMENTED["paths"]["/v1/plans"]["post"]["responses"]["422"]["content"]
    media_type = response.headers["content-type"].split(";")[0]
    assert media_type in documented, f"served as {media_type}, documented as {sorted(documented)}"
    validator = jsonschema_rs.validator_for(
        {**documented[media_type]["schema"], "components": DOCUMENTED["components"]}
    )
    errors = [e.message for e in validator.iter_errors(response.json())]
    assert not errors, errors


def test_metrics_content_type_is_documented(world):
    response = world["client"].get("/metrics")
    documented = DOCUMENTED["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert response.headers["content-type"].split(";")[0] in documented, (
        response.headers["content-type"],
        sorted(documented),
    )


# --- explicit cases -----------------------------------------------------------------------------------------------
#
# One world (app, data) is shared by the explicit tests: a refused request must change nothing (each test proves
# it with a snapshot), so the world only has to be rebuilt after a test that *accepted* a write, or after the
# fuzzer (which empties the database).

_WORLD: dict[str, Any] = {}


def spoil() -> None:
    _WORLD.pop("world", None)


@pytest.fixture(scope="module")
def module_client(database_url: str):
    from app.main import create_app

    spoil()
    with TestClient(create_app(make_settings(database_url)), raise_server_exceptions=False) as client:
        yield client
    spoil()


class Worlds:
    """The shared world: a plan, a customer with an active subscription and its payment, and a second customer on
    a trial; built again after something spoiled it."""

    def __init__(self, client: TestClient, database_url: str) -> None:
        self.client = client
        self.database_url = database_url

    def __call__(self) -> dict:
        if "world" not in _WORLD:
            asyncio.run(_empty(self.database_url))
            api = Api(self.client)
            api.ok("POST", "/v1/sandbox/clock", json={"now": START})
            api.ok("POST", "/v1/plans", 201, json=PLAN)
            alice = api.as_customer("alice").ok(
                "POST", "/v1/customers", 201, json={"email": "alice@example.com", "name": "Alice", "country": "US"}
            )
            sub = api.as_customer("alice").ok(
                "POST",
                "/v1/subscriptions",
                201,
                json={"customer_id": alice["id"], "plan": PLAN["code"], "payment_method": "pm_card_visa"},
            )
            [payment] = api.all(f"/v1/customers/{alice['id']}/payments")
            bob = api.as_customer("bob").ok(
                "POST", "/v1/customers", 201, json={"email": "bob@example.com", "name": "Bob", "country": "DE"}
            )
            trial = api.as_customer("bob").ok(
                "POST", "/v1/trials", 201, json={"customer_id": bob["id"], "plan": PLAN["code"]}
            )
            _WORLD["world"] = {
                "api": api,
                "client": self.client,
                "alice": alice,
                "bob": bob,
                "sub": sub,
                "payment": payment,
                "trial": trial,
            }
        return _WORLD["world"]


@pytest.fixture
def worlds(module_client, database_url: str) -> Worlds:
    return Worlds(module_client, database_url)


@pytest.fixture
def world(worlds: Worlds) -> dict:
    return worlds()


def snapshot(w: dict) -> dict:
    """Everything the API shows that a write could change: the whole audit log (every change is audited, new
    customers and plans included), the plans, the clock, and each customer's full export (D1: customer,
    subscriptions, trials, payments, refunds, credits, notices, audit events)."""
    api = w["api"]
    return {
        "audit": api.all("/v1/audit-events"),
        "plans": api.all("/v1/plans"),
        "clock": api.ok("GET", "/v1/sandbox/clock"),
        **{who: api.ok("GET", f"/v1/customers/{w[who]['id']}/export") for who in ("alice", "bob")},
    }


def is_problem(response, statuses: range | set = range(400, 500)) -> dict:
    """A clear 4xx problem+json (api.md conventions)."""
    assert response.status_code in statuses, (
        f"{response.request.method} {response.request.url}: {response.status_code} {response.text[:300]}"
    )
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers["content-type"]
    body = response.json()
    assert body["status"] == response.status_code and body["code"] and body["title"] and body["type"], body
    if body["code"] == "validation_error":
        assert response.status_code == 422 and body.get("errors"), body
    return body


class Refusals:
    """Send hostile requests; each must be refused with a 4xx problem, and together they must change nothing."""

    def __init__(self, w: dict) -> None:
        self.w = w

    def __enter__(self) -> Refusals:
        self.before = snapshot(self.w)
        return self

    def send(self, method: str, path: str, *, as_customer: str | None = None, **kwargs: Any) -> dict:
        api = self.w["api"].as_customer(as_customer) if as_customer else self.w["api"]
        response = api.request(method, path, **kwargs)
        if response.status_code < 400:
            spoil()  # it was accepted: the world changed
        return is_problem(response) | {"_status": response.status_code}

    def __exit__(self, kind, *_: Any) -> None:
        if kind is None:
            after = snapshot(self.w)
            if after != self.before:
                spoil()
            assert after == self.before, "a refused request changed something"


def writes(w: dict) -> list[tuple[str, str, str | None, dict]]:
    """Every write endpoint with a valid body: (method, path, customer to act as or None for ops, body)."""
    alice, sub, payment = w["alice"]["id"], w["sub"]["id"], w["payment"]["id"]
    return [
        (
            "POST",
            "/v1/customers",
            None,
            {"email": "new@example.com", "name": "New", "country": "FR", "external_id": "new-1"},
        ),
        (
            "PATCH",
            f"/v1/customers/{alice}",
            "alice",
            {"name": "Alice B", "email": "alice.b@example.com", "country": "GB"},
        ),
        ("POST", f"/v1/customers/{alice}/suspend", None, {"reason": "fraud check"}),
        ("POST", f"/v1/customers/{alice}/terminate", None, {"reason": "fraud"}),
        ("POST", "/v1/plans", None, {**PLAN, "code": "team-yearly", "interval": "year", "name": "Team"}),
        ("PATCH", f"/v1/plans/{PLAN['code']}", None, {"amount": 2500}),
        ("POST", "/v1/trials", "alice", {"customer_id": alice, "plan": PLAN["code"]}),
        (
            "POST",
            "/v1/subscriptions",
            "alice",
            {"customer_id": alice, "plan": PLAN["code"], "payment_method": "pm_card_visa"},
        ),
        ("POST", f"/v1/subscriptions/{sub}/payment-method", "alice", {"payment_method": "pm_card_mastercard"}),
        ("POST", f"/v1/payments/{payment}/refunds", None, {"amount": 100, "reason": "goodwill"}),
        ("POST", f"/v1/customers/{alice}/credits", None, {"amount": 100, "currency": "usd", "reason": "goodwill"}),
        ("POST", f"/v1/customers/{alice}/messages", None, {"category": "service", "subject": "Hi", "body": "Hello"}),
        ("POST", "/v1/sandbox/clock", None, {"now": "2030-02-01T00:00:00Z"}),
    ]


WRITE_NAMES = [
    "create-customer",
    "patch-customer",
    "suspend",
    "terminate",
    "create-plan",
    "patch-plan",
    "trial",
    "purchase",
    "payment-method",
    "refund",
    "credit",
    "message",
    "clock",
]
MALFORMED = [
    b'{"amount": ',
    b"{'single': 'quotes'}",
    b"\xff\xfe\x00",
    b"[1, 2",
    b"null",
    b"",
    b"NaN",
    b"[]",
    b'"just a string"',
    b"{" * 10_000 + b"}" * 10_000,
]


def test_malformed_json_is_a_validation_problem_on_every_write(world):
    with Refusals(world) as refusals:
        for method, path, who, _body in writes(world):
            for raw in MALFORMED:
                body = refusals.send(
                    method, path, as_customer=who, content=raw, headers={"Content-Type": "application/json"}
                )
                assert body["_status"] == 422 and body["code"] == "validation_error", (path, raw[:20])


def test_a_2_mib_body_is_413_on_every_write_with_or_without_a_length(world):
    with Refusals(world) as refusals:
        for method, path, who, body in writes(world):
            big = json.dumps({**body, "padding": "x" * (2 * 1024 * 1024)}).encode()
            refused = refusals.send(
                method, path, as_customer=who, content=big, headers={"Content-Type": "application/json"}
            )
            assert refused["_status"] == 413 and refused["code"] == "payload_too_large", path

            def chunks(data: bytes = big):  # no Content-Length (chunked): the limit must hold for a stream too
                for start in range(0, len(data), 256 * 1024):
                    yield data[start : start + 256 * 1024]

            refused = refusals.send(
                method, path, as_customer=who, content=chunks(), headers={"Content-Type": "application/json"}
            )
            assert refused["_status"] == 413, path


BAD_AMOUNTS = [
    10**30,
    10**12 + 1,
    2**63,
    -1,
    -(10**30),
    0,
    0.5,
    19.99,
    20.0,
    1e30,
    float("inf"),
    float("nan"),
    "100",
    True,
    None,
    [100],
    {"amount": 100},
]


def test_absurd_amounts_are_refused(world):
    alice, payment = world["alice"]["id"], world["payment"]["id"]
    with Refusals(world) as refusals:
        for amount in BAD_AMOUNTS:
            cases = [
                ("POST", f"/v1/payments/{payment}/refunds", {"amount": amount, "reason": "r"}),
                ("POST", f"/v1/customers/{alice}/credits", {"amount": amount, "currency": "usd", "reason": "r"}),
                ("POST", "/v1/plans", {**PLAN, "code": "odd", "amount": amount}),
                ("PATCH", f"/v1/plans/{PLAN['code']}", {"amount": amount}),
            ]
            for method, path, body in cases:
                if (amount == 0 and method != "POST") or (amount == 0 and path == "/v1/plans"):
                    continue  # a free plan (and a list price of 0) is allowed
                content = json.dumps(body, allow_nan=True).encode()  # inf/nan go out as Infinity/NaN: not JSON
                refused = refusals.send(method, path, content=content, headers={"Content-Type": "application/json"})
                assert refused["_status"] == 422, (path, amount, refused)


CURRENCIES = ["usd ", " usd", "USD", "Usd", "xxx", "xts", "us", "usdd", "", "u$d", "€", "usd\n", 840, None]


def test_unknown_currencies_are_refused(world):
    alice = world["alice"]["id"]
    with Refusals(world) as refusals:
        for currency in CURRENCIES:
            for method, path, body in (
                ("POST", f"/v1/customers/{alice}/credits", {"amount": 100, "currency": currency, "reason": "r"}),
                ("POST", "/v1/plans", {**PLAN, "code": "odd", "currency": currency}),
            ):
                refused = refusals.send(method, path, json=body)
                assert refused["_status"] == 422 and "currency" in json.dumps(refused), (currency, refused)


ABSURD_NOW = [
    "10000-01-01T00:00:00Z",
    "2026-13-45T00:00:00Z",
    "2031-02-30T00:00:00Z",
    "2031-01-01T24:00:01Z",
    "2031-01-01T00:00:00",  # naive: refused, the clock is in UTC
    "2031-01-01",
    "2031-01-01T00:00:00+25:00",
    "yesterday",
    "",
    "  ",
    1e30,
    None,
    [],
    {},
    "2031-01-01T00:00:00Z\u0000",
]


def test_absurd_clock_dates_are_refused(world):
    with Refusals(world) as refusals:
        for now in ABSURD_NOW:
            assert refusals.send("POST", "/v1/sandbox/clock", json={"now": now})["_status"] == 422, now
        assert (
            refusals.send("POST", "/v1/sandbox/clock", json={"now": "2020-01-01T00:00:00Z"})["code"]
            == "clock_backwards"
        )


@pytest.mark.parametrize(
    "now",
    [
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+14:00",
    ],
)
def test_clock_dates_that_overflow_in_utc_are_refused(world, now):
    """Aware times whose UTC value falls outside the datetime range (a 500 until the clock validated them)."""
    with Refusals(world) as refusals:
        assert refusals.send("POST", "/v1/sandbox/clock", json={"now": now})["_status"] == 422


def test_a_clock_at_the_end_of_time_is_refused_or_harmless(world):
    """A clock so late that the next period or trial end overflows must be refused, or leave the API working
    (it used to make every trial and purchase a 500, for good: the clock never moves back)."""
    api = world["api"]
    spoil()
    moved = api.post("/v1/sandbox/clock", json={"now": "9999-12-20T00:00:00Z"})
    assert moved.status_code < 500
    if moved.status_code == 200:
        carol = api.as_customer("carol").ok(
            "POST", "/v1/customers", 201, json={"email": "carol@example.com", "name": "Carol", "country": "US"}
        )
        response = api.as_customer("carol").post("/v1/trials", json={"customer_id": carol["id"], "plan": PLAN["code"]})
        assert response.status_code < 500, response.text


# Every string field of every write, with where a hostile value lands: "stored" (kept as text), "lookup" (used to
# find something), or "pattern" (a code/method/country/currency with a fixed alphabet).
STRING_FIELDS = [
    ("create-customer", "email", "stored"),
    ("create-customer", "name", "stored"),
    ("create-customer", "country", "pattern"),
    ("create-customer", "external_id", "stored"),
    ("patch-customer", "email", "stored"),
    ("patch-customer", "name", "stored"),
    ("patch-customer", "country", "pattern"),
    ("suspend", "reason", "stored"),
    ("terminate", "reason", "stored"),
    ("create-plan", "code", "pattern"),
    ("create-plan", "name", "stored"),
    ("create-plan", "currency", "pattern"),
    ("trial", "customer_id", "lookup"),
    ("trial", "plan", "lookup"),
    ("purchase", "customer_id", "lookup"),
    ("purchase", "plan", "lookup"),
    ("purchase", "payment_method", "pattern"),
    ("payment-method", "payment_method", "pattern"),
    ("refund", "reason", "stored"),
    ("credit", "reason", "stored"),
    ("credit", "currency", "pattern"),
    ("message", "subject", "stored"),
    ("message", "body", "stored"),
]
FIELD_IDS = [f"{w}.{f}" for w, f, _ in STRING_FIELDS]
UNICODE = {
    "emoji": "😀🎉 Zoë 👩🏽‍💻",
    "rtl": "\u202eevil\u202c مرحبا שלום",
    "zero-width": "a\u200bb\ufeffc",
    "control": "a\u0007\u001bb",
    "lone-surrogate": "\ud800",
    "10k": "é" * 10_000,
}


@pytest.mark.parametrize("write,field,role", STRING_FIELDS, ids=FIELD_IDS)
def test_unicode_in_every_string_field_is_refused_or_kept_exactly(worlds, write, field, role):
    """Free text may be any unicode that fits (names are people's names): either refused with a 4xx problem that
    changes nothing, or stored and shown exactly as sent (trimmed). Codes, ids, too-long text: refused."""
    w, before = None, None
    for kind, value in UNICODE.items():
        if w is not worlds():  # first round, or the world was rebuilt after an accepted write
            w = worlds()
            before = snapshot(w)
        method, path, who, body = writes(w)[WRITE_NAMES.index(write)]
        api = w["api"].as_customer(who) if who else w["api"]
        content = json.dumps({**body, field: value}, ensure_ascii=True).encode()  # a lone surrogate as \ud800
        response = api.request(method, path, content=content, headers={"Content-Type": "application/json"})
        assert response.status_code < 500, f"{kind}: {response.status_code} {response.text[:300]}"
        if response.status_code < 400:
            spoil()  # accepted: the world changed
        if response.status_code >= 400 or kind in ("10k", "lone-surrogate") or role in ("pattern", "lookup"):
            is_problem(response)
            assert snapshot(w) == before, f"{kind}: a refused request changed something"
            continue
        stored = json.dumps(response.json(), ensure_ascii=False) + json.dumps(
            w["api"].all("/v1/audit-events", {"customer_id": w["alice"]["id"]}), ensure_ascii=False
        )
        assert json.dumps(value.strip(), ensure_ascii=False)[1:-1] in stored, f"{kind}: {stored[:300]}"


@pytest.mark.parametrize("write,field,role", STRING_FIELDS, ids=FIELD_IDS)
def test_nul_in_every_string_field_is_refused(world, write, field, role):
    """NUL reaches no database as text (PostgreSQL refuses it): refused as a validation error, nothing stored."""
    method, path, who, body = writes(world)[WRITE_NAMES.index(write)]
    with Refusals(world) as refusals:
        refused = refusals.send(method, path, as_customer=who, json={**body, field: "a\u0000b"})
        assert refused["_status"] in (404, 422), refused


@pytest.mark.parametrize("where", ["path", "query", "audit-filter", "webhook-event-id"])
def test_nul_in_ids_and_filters_is_not_a_server_error(world, where):
    api = world["api"]
    if where == "path":
        urls = [
            "/v1/customers/a%00b",
            "/v1/subscriptions/a%00b",
            "/v1/payments/a%00b",
            "/v1/trials/a%00b",
            "/v1/plans/a%00b",
            "/v1/customers/a%00b/notices",
        ]
        responses = [api.get(url) for url in urls]
    elif where == "query":
        responses = [api.get(f"/v1/customers/{world['alice']['id']}/payments", params={"starting_after": "a\x00"})]
    elif where == "audit-filter":
        responses = [api.get("/v1/audit-events", params={"actor": "a\x00"})]
    else:
        from tests.support.webhooks import intent_event, post_event

        evt = intent_event("payment_intent.succeeded", "pi_unknown", event_id="evt_\x00nul")
        responses = [post_event(world["client"], evt, "whsec_sandbox")]
    for response in responses:
        assert response.status_code < 500, f"{response.request.url}: {response.status_code} {response.text[:200]}"


def test_an_overlong_or_empty_idempotency_key_is_refused(world):
    alice = world["alice"]["id"]
    body = {"amount": 100, "currency": "usd", "reason": "goodwill"}
    with Refusals(world) as refusals:
        for key in ("k" * 256, ""):
            assert (
                refusals.send("POST", f"/v1/customers/{alice}/credits", json=body, headers={"Idempotency-Key": key})[
                    "_status"
                ]
                == 422
            )


def test_unknown_and_server_owned_fields_are_refused(world):
    """No mass assignment: a body may not set what the server owns."""
    alice, sub = world["alice"]["id"], world["sub"]["id"]
    with Refusals(world) as refusals:
        for method, path, who, body in (
            ("PATCH", f"/v1/customers/{alice}", "alice", {"status": "active", "name": "A"}),
            (
                "POST",
                "/v1/subscriptions",
                "alice",
                {"customer_id": alice, "plan": PLAN["code"], "payment_method": "pm_card_visa", "status": "active"},
            ),
            (
                "POST",
                f"/v1/subscriptions/{sub}/payment-method",
                "alice",
                {"payment_method": "pm_card_visa", "price_amount": 0},
            ),
            ("POST", "/v1/plans", None, {**PLAN, "code": "x", "active": False, "id": "plan_1"}),
        ):
            assert refusals.send(method, path, as_customer=who, json=body)["_status"] == 422


def test_stale_and_future_webhook_signatures_change_nothing(world):
    from tests.support.webhooks import intent_event, post_event

    evt = intent_event("payment_intent.payment_failed", world["payment"]["gateway_payment_id"])
    before = snapshot(world)
    for when in (0, 2**31, int(_dt.datetime(2999, 1, 1).timestamp())):
        response = post_event(world["client"], evt, "whsec_sandbox", timestamp=when)
        assert is_problem(response)["code"] == "invalid_signature"
    assert snapshot(world) == before


# --- signed webhook events of a shape that can never be processed (issue 14, item 10) ------------------------------


def _charge(w: dict, *refund_amounts: Any, charge_amount: int | None = None) -> dict:
    """A Charge shaped like Stripe's for the world's payment, listing refunds made in the dashboard."""
    pi, currency = w["payment"]["gateway_payment_id"], w["payment"]["currency"]
    amount = w["payment"]["amount"] if charge_amount is None else charge_amount
    refunds = [
        {
            "id": f"re_hostile_{i}",
            "object": "refund",
            "amount": value,
            "currency": currency,
            "status": "succeeded",
            "metadata": {},
            "payment_intent": pi,
            "charge": "ch_hostile",
        }
        for i, value in enumerate(refund_amounts)
    ]
    refunded = sum(r for r in refund_amounts if isinstance(r, int))
    return {
        "id": "ch_hostile",
        "object": "charge",
        "amount": amount,
        "amount_refunded": refunded,
        "currency": currency,
        "payment_intent": pi,
        "refunded": refunded >= amount,
        "metadata": {},
        "refunds": {"object": "list", "data": refunds, "has_more": False, "url": "/v1/charges/ch_hostile/refunds"},
    }


def _refunded(w: dict, *refund_amounts: Any, **charge: Any) -> dict:
    from tests.support.webhooks import event

    return event("charge.refunded", _charge(w, *refund_amounts, **charge))


def _with(evt: dict, path: tuple, value: Any) -> dict:
    target = evt
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return evt


def _deep(levels: int):
    def build(w: dict) -> str:
        """A charge.refunded holding arrays nested `levels` deep: raw JSON text (json.dumps would recurse)."""
        head = json.dumps(_refunded(w, 100))[:-1]  # without the envelope's closing brace
        return head + ', "deep": ' + "[" * levels + "]" * levels + "}"

    return build


def _payment_failed(intent_id: str, **intent: Any) -> dict:
    from tests.support.webhooks import intent_event

    return intent_event("payment_intent.payment_failed", intent_id, **intent)


MALFORMED_EVENTS: dict[str, tuple[Any, int]] = {  # name -> (the world -> event or raw JSON text, status)
    "type_a_list": (lambda w: _with(_refunded(w, 100), ("type",), ["charge.refunded"]), 400),
    "type_an_object": (lambda w: _with(_refunded(w, 100), ("type",), {"name": "charge.refunded"}), 400),
    "type_100k": (lambda w: _with(_refunded(w, 100), ("type",), "charge." + "x" * 100_000), 400),
    "data_a_string": (lambda w: _with(_refunded(w, 100), ("data",), "charge"), 400),
    "data_missing": (lambda w: {k: v for k, v in _refunded(w, 100).items() if k != "data"}, 400),
    "data_object_a_list": (lambda w: _with(_refunded(w, 100), ("data", "object"), [_charge(w, 100)]), 400),
    "data_object_a_number": (lambda w: _with(_refunded(w, 100), ("data", "object"), 7), 400),
    "event_id_a_dict": (lambda w: _with(_refunded(w, 100), ("id",), {"id": "evt_1"}), 400),
    "event_id_100k": (lambda w: _with(_refunded(w, 100), ("id",), "evt_" + "x" * 100_000), 400),
    "charge_id_a_dict": (lambda w: _with(_refunded(w, 100), ("data", "object", "id"), {"id": "ch_1"}), 400),
    "payment_intent_a_dict": (
        lambda w: _with(
            _refunded(w, 100), ("data", "object", "payment_intent"), {"id": w["payment"]["gateway_payment_id"]}
        ),
        400,
    ),
    "intent_id_a_dict": (lambda w: _with(_payment_failed("pi_x"), ("data", "object", "id"), {"id": "pi_x"}), 400),
    "intent_id_100k": (lambda w: _payment_failed("pi_" + "x" * 100_000), 400),
    "intent_id_with_nul": (lambda w: _payment_failed("pi_a\x00b"), 400),
    "intent_metadata_a_string": (lambda w: _payment_failed("pi_unknown", metadata="idempotency_key=abc"), 400),
    "intent_metadata_a_list": (lambda w: _payment_failed("pi_unknown", metadata=["idempotency_key"]), 400),
    "decline_code_a_dict": (
        lambda w: _with(
            _payment_failed("pi_unknown"), ("data", "object", "last_payment_error", "decline_code"), {"x": 1}
        ),
        400,
    ),
    "refund_metadata_a_string": (
        lambda w: _with(_refunded(w, 100), ("data", "object", "refunds", "data", 0, "metadata"), "ours"),
        400,
    ),
    "refunds_a_list": (lambda w: _with(_refunded(w, 100), ("data", "object", "refunds"), []), 400),
    "nested_5000_deep": (_deep(5000), 400),
    "nested_900_deep": (_deep(900), 400),  # within orjson's limit, not within the parser's
    "refund_above_the_charge": (lambda w: _refunded(w, w["payment"]["amount"] + 1), 400),
    "refund_above_the_payment": (
        lambda w: _refunded(w, w["payment"]["amount"] + 1, charge_amount=w["payment"]["amount"] + 1),
        400,
    ),
    "refunds_together_above_the_payment": (
        lambda w: _refunded(w, w["payment"]["amount"], 1, charge_amount=w["payment"]["amount"] + 1),
        400,
    ),
    "refund_negative": (lambda w: _refunded(w, -100), 400),
    "refund_zero": (lambda w: _refunded(w, 0), 400),
    "refund_amount_a_string": (lambda w: _refunded(w, "100"), 400),
    "refund_amount_a_float": (lambda w: _refunded(w, 100.5), 400),
    "refund_amount_2_to_the_70": (lambda w: _refunded(w, 2**70), 400),
    # Merely unknown: acknowledged and ignored.
    "unknown_type": (lambda w: _with(_refunded(w, 100), ("type",), "charge.refund.updated_someday"), 200),
    "unknown_type_odd_object": (lambda w: _with(_refunded(w, 100), ("type",), "plan.created"), 200),
    "unknown_payment_intent": (lambda w: _payment_failed("pi_nobody_knows"), 200),
    "unknown_charge": (lambda w: _with(_refunded(w, 100), ("data", "object", "payment_intent"), "pi_nobody"), 200),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_EVENTS))
def test_a_signed_webhook_event_of_a_bad_shape_is_400_or_ignored_and_changes_nothing(world, case):
    """api.md "Payment webhooks" (and R2: a refund recorded from Stripe never takes the total refunded above what
    was paid): a properly signed event that can never be processed is a 400 problem, one that is merely unknown is
    acknowledged with 200; never a 500 (which Stripe retries for days), and either way nothing changes. A
    well-formed event afterwards (with the same id when the refused one had a usable id) is applied."""
    from tests.support.webhooks import post_event, signature

    client = world["client"]
    build, status = MALFORMED_EVENTS[case]
    evt = build(world)
    before = snapshot(world)
    if isinstance(evt, str):
        response = client.post(
            "/v1/webhooks/stripe",
            content=evt.encode(),
            headers={"Stripe-Signature": signature(evt, "whsec_sandbox"), "Content-Type": "application/json"},
        )
    else:
        response = post_event(client, evt, "whsec_sandbox")
    spoil()  # the good event below changes the world (and so may a refused one, if the refusal fails)
    if status == 400:
        assert is_problem(response, {400})["code"] == "invalid_event", response.text
    else:
        assert response.status_code == 200, response.text[:300]
        assert response.json()["outcome"] in ("ignored", "unknown_object"), response.text
    assert snapshot(world) == before

    good = _refunded(world, 100)
    event_id = evt.get("id") if isinstance(evt, dict) else None
    if status == 400 and isinstance(event_id, str) and len(event_id) < 100:
        good["id"] = event_id  # the refused event was not recorded: its id is still free
    applied = post_event(client, good, "whsec_sandbox")
    assert applied.status_code == 200 and applied.json() == {
        "received": True,
        "duplicate": False,
        "outcome": "applied",
    }, applied.text
    [refund] = world["api"].ok("GET", f"/v1/customers/{world['alice']['id']}/export")["refunds"]
    assert (refund["amount"], refund["source"], refund["gateway_refund_id"]) == (100, "gateway", "re_hostile_0")


@pytest.mark.parametrize("case", ["type_a_list", "data_object_a_list", "nested_5000_deep", "refund_negative"])
def test_a_malformed_webhook_event_badly_signed_is_an_invalid_signature(world, case):
    """api.md "Payment webhooks": the signature is checked before the event is even parsed: a malformed event
    that is not Stripe's is refused as a bad signature (400 `invalid_signature`), and nothing changes."""
    from tests.support.webhooks import signature

    evt = MALFORMED_EVENTS[case][0](world)
    text = evt if isinstance(evt, str) else json.dumps(evt)
    before = snapshot(world)
    response = world["client"].post(
        "/v1/webhooks/stripe",
        content=text.encode(),
        headers={"Stripe-Signature": signature(text, "whsec_forged"), "Content-Type": "application/json"},
    )
    assert is_problem(response, {400})["code"] == "invalid_signature"
    assert snapshot(world) == before
