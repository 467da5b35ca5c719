"""Who may call: table-driven over every endpoint in tests/api/endpoints.py.

- no token, or any token that is not a valid, unexpired HS256 token with `sub` and `role` (customer|ops): 401;
- ops-only endpoints with a customer token: 403;
- a customer's resources with another customer's token: 404, indistinguishable from a resource that does not exist;
- the payment webhook wants Stripe's signature, the ops console an ops session cookie and CSRF token: no bearer
  token stands in for either;
- refused calls change nothing;
- every route the app serves is in the table, so a new endpoint cannot skip these checks.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import json
import re
import time

import jwt
import pytest

from tests.api import shared
from tests.api.endpoints import ENDPOINTS, OTHER_SUB, OWNER_SUB, PLAN_CODE, Endpoint
from tests.conftest import (
    SECRET,
    customer_headers,
    make_customer,
    make_plan,
    ops_headers,
    token,
)

client = shared.client  # fixtures: one app per module, see tests/api/shared.py
module_client = shared.module_client

PUBLIC = [e for e in ENDPOINTS if e.access == "public"]
PROTECTED = [e for e in ENDPOINTS if e.access in ("any", "owner", "ops")]
SIGNED = [e for e in ENDPOINTS if e.access == "signed"]
CONSOLE = [e for e in ENDPOINTS if e.access == "console"]
CONSOLE_POSTS = [e for e in CONSOLE if e.method == "POST"]
OWNER = [e for e in ENDPOINTS if e.access == "owner"]
OPS_ONLY = [e for e in ENDPOINTS if e.access == "ops"]
ANY = [e for e in ENDPOINTS if e.access == "any"]
PROBLEM_JSON = "application/problem+json"


def _ids(endpoints: list[Endpoint]) -> list[str]:
    return [e.id for e in endpoints]


class World(dict):
    """What the placeholders of the table point at. Made on first use, so that a check of one endpoint does not
    depend on another endpoint working (a trial is started only for paths with {trial_id})."""

    def __init__(self, client) -> None:
        super().__init__()
        self.client = client
        self["customer_id"] = make_customer(client, OWNER_SUB)["id"]
        make_customer(client, OTHER_SUB)
        make_plan(client, PLAN_CODE, trial_available=True)
        self["code"] = PLAN_CODE
        self["action"] = "suspend"

    def __missing__(self, key: str) -> str:
        owner = customer_headers(OWNER_SUB)
        if key == "trial_id":
            response = self.client.post(
                "/v1/trials", json={"customer_id": self["customer_id"], "plan": PLAN_CODE}, headers=owner
            )
        elif key == "subscription_id":
            response = self.client.post(
                "/v1/subscriptions",
                json={"customer_id": self["customer_id"], "plan": PLAN_CODE, "payment_method": "pm_card_visa"},
                headers=owner,
            )
        elif key == "payment_id":
            self["subscription_id"]
            response = self.client.get(f"/v1/customers/{self['customer_id']}/payments", headers=owner)
            assert response.status_code == 200 and response.json()["data"], response.text
            self[key] = response.json()["data"][0]["id"]
            return self[key]
        elif key in ("invoice_id", "credit_note_id"):
            if key == "credit_note_id":
                self["invoice_id"]  # the refund's payment has its invoice first
            self[key] = _issue_document(self.client, key, self["payment_id"])
            return self[key]
        elif key == "other_code":  # C3: a second plan to change to
            self[key] = make_plan(self.client, f"{PLAN_CODE}-yearly", interval="year", amount=20000)["code"]
            return self[key]
        elif key == "event_id":  # the owner's customer.created
            response = self.client.get("/v1/events", params={"customer_id": self["customer_id"]}, headers=ops_headers())
            assert response.status_code == 200 and response.json()["data"], response.text
            self[key] = response.json()["data"][-1]["id"]
            return self[key]
        else:
            raise KeyError(f"no value for the placeholder {{{key}}}; teach World in test_auth.py about it")
        assert response.status_code == 201, response.text
        self[key] = response.json()["id"]
        return self[key]


def _issue_document(client, key: str, payment_id: str) -> str:
    """The payment's invoice, or the credit note of a refund of it, as the settlement issued them (issue 17)."""
    if key == "invoice_id":
        response = client.get(f"/v1/payments/{payment_id}", headers=ops_headers())
        assert response.status_code == 200, response.text
        return response.json()["invoice_id"]
    response = client.post(
        f"/v1/payments/{payment_id}/refunds",
        json={"amount": 100, "reason": "goodwill"},
        headers={**ops_headers(), "Idempotency-Key": "world-refund"},
    )
    assert response.status_code == 201, response.text
    return response.json()["credit_note_id"]


@pytest.fixture
def world(client) -> World:
    return World(client)


def fill(endpoint: Endpoint, world: dict[str, str]) -> tuple[str, object]:
    """The endpoint's path and example body with their placeholders filled in."""

    def fill_value(value):
        if isinstance(value, str):
            return value.format_map(world)
        if isinstance(value, dict):
            return {k: fill_value(v) for k, v in value.items()}
        return value

    return endpoint.path.format_map(world), fill_value(endpoint.body)


def call(client, endpoint: Endpoint, world: dict[str, str], headers: dict[str, str] | None = None):
    path, body = fill(endpoint, world)
    if endpoint.access.startswith("console"):  # HTML forms
        return client.request(endpoint.method, path, data=body, headers=headers or {}, follow_redirects=False)
    return client.request(endpoint.method, path, json=body, headers=headers or {}, follow_redirects=False)


def snapshot(client, world: dict[str, str]) -> tuple:
    """What the endpoints in the table could change, read with an ops token: the catalogue, the owner's record,
    the clock, and the audit log, which records every change the service makes."""
    ops = ops_headers()
    reads = [
        "/v1/plans?limit=100",
        f"/v1/plans/{world['code']}",
        f"/v1/customers/{world['customer_id']}",
        "/v1/sandbox/clock",
        "/v1/audit-events?limit=100",
    ]
    responses = [client.get(path, headers=ops) for path in reads]
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    return tuple(r.json() for r in responses)


def assert_problem(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code


# --- bad tokens -------------------------------------------------------------------------------------------------


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**overrides) -> dict:
    exp = int((_dt.datetime.now(_dt.UTC) + _dt.timedelta(hours=1)).timestamp())
    claims = {"sub": OWNER_SUB, "role": "ops", "exp": exp}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(**claims) -> str:
    return f"Bearer {jwt.encode(_claims(**claims), SECRET, algorithm='HS256')}"


def _raw_signed(sub_member: str) -> str:
    """A token whose payload is written by hand (json.dumps cannot write a lone surrogate), validly signed."""
    claims = {k: v for k, v in _claims().items() if k != "sub"}
    payload = "{" + sub_member + ", " + json.dumps(claims)[1:]
    header = _b64({"alg": "HS256", "typ": "JWT"})
    body = base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()
    signing_input = f"{header}.{body}".encode()
    signature = base64.urlsafe_b64encode(hmac.new(SECRET.encode(), signing_input, hashlib.sha256).digest())
    return f"Bearer {header}.{body}.{signature.rstrip(b'=').decode()}"


def _tampered() -> str:
    """A genuine customer token whose payload was rewritten to role ops, keeping the original signature."""
    header, _payload, signature = token(OWNER_SUB, "customer").split(".")
    return f"{header}.{_b64(_claims())}.{signature}"


BAD_AUTHORIZATION = {
    "missing": lambda: None,
    "other_secret": lambda: f"Bearer {token(OWNER_SUB, 'ops', secret='another-secret-0123456789abcdef')}",
    "expired": lambda: f"Bearer {token(OWNER_SUB, 'ops', hours=-1)}",
    "hs512": lambda: f"Bearer {jwt.encode(_claims(), SECRET, algorithm='HS512')}",
    "hs384": lambda: f"Bearer {jwt.encode(_claims(), SECRET, algorithm='HS384')}",
    "alg_none": lambda: f"Bearer {_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}.",
    "role_admin": lambda: f"Bearer {jwt.encode(_claims(role='admin'), SECRET, algorithm='HS256')}",
    "no_role": lambda: f"Bearer {jwt.encode(_claims(role=None), SECRET, algorithm='HS256')}",
    "no_sub": lambda: f"Bearer {jwt.encode(_claims(sub=None), SECRET, algorithm='HS256')}",
    "empty_sub": lambda: f"Bearer {jwt.encode(_claims(sub=''), SECRET, algorithm='HS256')}",
    "no_exp": lambda: f"Bearer {jwt.encode(_claims(exp=None), SECRET, algorithm='HS256')}",
    # api.md "No or bad token: 401": a `sub` that no database can store or match (PostgreSQL refuses NUL in text)
    # and claims of the wrong type are a bad token, on both databases.
    "nul_in_sub": lambda: _signed(sub=f"{OWNER_SUB}\x00x"),
    "newline_in_sub": lambda: _signed(sub=f"{OWNER_SUB}\nx"),
    "escape_in_sub": lambda: _signed(sub=f"\x1b[31m{OWNER_SUB}"),
    "del_in_sub": lambda: _signed(sub=f"{OWNER_SUB}\x7f"),
    "c1_control_in_sub": lambda: _signed(sub=f"{OWNER_SUB}\x85"),
    "surrogate_in_sub": lambda: _raw_signed('"sub": "a\\ud800b"'),
    "sub_too_long": lambda: _signed(sub="s" * 256),
    "sub_a_number": lambda: _signed(sub=12345),
    "sub_a_list": lambda: _signed(sub=[OWNER_SUB]),
    "sub_an_object": lambda: _signed(sub={"id": OWNER_SUB}),
    "sub_true": lambda: _signed(sub=True),
    "role_a_list": lambda: _signed(role=["ops"]),
    "role_an_object": lambda: _signed(role={"ops": True}),
    "role_a_number": lambda: _signed(role=1),
    "tampered_payload": _tampered,
    "garbage": lambda: "Bearer not-a-jwt",
    "basic_scheme": lambda: "Basic " + base64.b64encode(b"ops:secret").decode(),
    "bare_token": lambda: token(OWNER_SUB, "ops"),
    "empty_bearer": lambda: "Bearer ",
}


def test_the_valid_token_used_as_a_control_is_accepted(client) -> None:
    """The bad tokens below differ from this one in one respect each; this one must work."""
    good = jwt.encode(_claims(), SECRET, algorithm="HS256")
    response = client.post("/v1/sandbox/run-due", headers={"Authorization": f"Bearer {good}"})
    assert response.status_code == 200, response.text


def test_a_token_that_verified_once_is_refused_once_it_expires(client) -> None:
    """A verified token is remembered for speed; its expiry is still checked on every request."""
    expires = int(time.time()) + 2
    short = jwt.encode({**_claims(), "exp": expires}, SECRET, algorithm="HS256")
    headers = {"Authorization": f"Bearer {short}"}
    assert client.post("/v1/sandbox/run-due", headers=headers).status_code == 200
    assert client.post("/v1/sandbox/run-due", headers=headers).status_code == 200  # the remembered verification
    time.sleep(max(0.0, expires - time.time()) + 0.1)
    response = client.post("/v1/sandbox/run-due", headers=headers)
    assert response.status_code == 401 and "expired" in response.json()["detail"], response.text
    tampered = short[:-2] + ("AA" if not short.endswith("AA") else "BB")  # never verified: not remembered
    assert client.post("/v1/sandbox/run-due", headers={"Authorization": f"Bearer {tampered}"}).status_code == 401


class Nowhere(dict):
    """Placeholders that point at nothing: ids that do not exist, the plan code PLAN_CODE."""

    def __missing__(self, key: str) -> str:
        return PLAN_CODE if key == "code" else "x_00000000000000000000000000"


@pytest.mark.parametrize("endpoint", PROTECTED, ids=_ids(PROTECTED))
def test_no_token_is_401(module_client, endpoint: Endpoint) -> None:
    # The token is checked before anything is looked up, so the placeholders need not exist (and the database need
    # not be emptied): this check stays cheap however long the table grows. That a refusal changes nothing is
    # checked below, with real resources.
    response = call(module_client, endpoint, Nowhere())
    assert_problem(response, 401, "unauthenticated")


# Every endpoint is checked with these; the other kinds of bad token exercise the same verifier, so they are checked
# on one endpoint of each access class.
ON_EVERY_ENDPOINT = ("missing", "other_secret", "expired", "hs512", "hs384", "alg_none", "role_admin", "no_sub")
SAMPLE = [next(e for e in PROTECTED if e.access == access) for access in ("any", "owner", "ops")]


@pytest.mark.parametrize("kind", sorted(BAD_AUTHORIZATION))
def test_bad_token_is_401_and_changes_nothing(client, world, kind: str) -> None:
    endpoints = PROTECTED if kind in ON_EVERY_ENDPOINT else SAMPLE
    for endpoint in endpoints:
        fill(endpoint, world)  # make what the placeholders need before taking the snapshot
    before = snapshot(client, world)
    wrong = {}
    for endpoint in endpoints:
        authorization = BAD_AUTHORIZATION[kind]()
        response = call(client, endpoint, world, {"Authorization": authorization} if authorization else {})
        if (response.status_code, response.json().get("code")) != (401, "unauthenticated"):
            wrong[endpoint.id] = (response.status_code, response.text[:200])
        else:
            assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert not wrong, f"{kind} token was not refused with 401 by: {wrong}"
    assert snapshot(client, world) == before


def test_a_refused_token_does_not_claim_an_idempotency_key(client) -> None:
    body = next(e.body for e in ENDPOINTS if (e.method, e.path) == ("POST", "/v1/plans"))
    refused = client.post(
        "/v1/plans", json=body, headers={"Authorization": BAD_AUTHORIZATION["expired"](), "Idempotency-Key": "k-1"}
    )
    assert_problem(refused, 401, "unauthenticated")
    accepted = client.post("/v1/plans", json=body, headers={**ops_headers(OWNER_SUB), "Idempotency-Key": "k-1"})
    assert accepted.status_code == 201, accepted.text
    assert "idempotent-replayed" not in accepted.headers


# --- public -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", PUBLIC, ids=_ids(PUBLIC))
def test_public_endpoint_needs_no_token(client, world, endpoint: Endpoint) -> None:
    response = call(client, endpoint, world)
    assert 200 <= response.status_code < 300, response.text


# --- signed instead of a token (the payment webhook) -------------------------------------------------------------


@pytest.mark.parametrize("endpoint", SIGNED, ids=_ids(SIGNED))
def test_signed_endpoint_refuses_a_missing_or_bad_signature_whatever_the_token(
    client,
    world,
    endpoint: Endpoint,
) -> None:
    before = snapshot(client, world)
    for headers in (
        {},
        ops_headers(),
        {"Stripe-Signature": "t=1,v1=00"},
        {**ops_headers(), "Stripe-Signature": "t=1,v1=00"},
    ):
        response = call(client, endpoint, world, headers)
        assert response.status_code == 400, (headers, response.text)
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert snapshot(client, world) == before


# --- the ops console (session cookie and CSRF token instead of a bearer token) -----------------------------------


def _login_csrf(client) -> str:
    return re.search(r'name="csrf" value="([^"]*)"', client.get("/ops/login").text).group(1)


def _session(client, sub: str = "staff-1") -> dict[str, str]:
    """A signed-in ops session's cookie (the cookie holds a server-side session's id, never a token)."""
    signed_in = client.post(
        "/ops/login", data={"token": token(sub, "ops"), "csrf": _login_csrf(client)}, follow_redirects=False
    )
    assert signed_in.status_code == 303, signed_in.text[:300]
    session_id = client.cookies.pop("ops_session")
    return {"Cookie": f"ops_session={session_id}"}


def _sent_to_login(response) -> bool:
    return response.status_code in (302, 303, 307) and response.headers["location"].startswith("/ops/login")


@pytest.mark.parametrize("endpoint", CONSOLE, ids=_ids(CONSOLE))
def test_console_without_an_ops_session_sends_to_sign_in_and_changes_nothing(
    client,
    world,
    endpoint: Endpoint,
) -> None:
    fill(endpoint, world)
    before = snapshot(client, world)
    for headers in (
        {},
        ops_headers(),
        {"Cookie": f"ops_session={token('staff-1', 'ops')}"},
        {"Cookie": f"ops_session={BAD_AUTHORIZATION['expired']().split()[1]}"},
        {"Cookie": f"ops_session={BAD_AUTHORIZATION['alg_none']().split()[1]}"},
    ):
        response = call(client, endpoint, world, headers)
        assert _sent_to_login(response), (headers, response.status_code, response.text[:300])
        assert world["customer_id"] not in response.text
    assert snapshot(client, world) == before


@pytest.mark.parametrize("endpoint", CONSOLE_POSTS, ids=_ids(CONSOLE_POSTS))
def test_console_form_without_its_csrf_token_is_403_and_changes_nothing(
    client,
    world,
    endpoint: Endpoint,
) -> None:
    fill(endpoint, world)
    before = snapshot(client, world)
    for csrf in (None, "0" * 64):
        path, body = fill(endpoint, world)
        form = {**(body or {}), **({"csrf": csrf} if csrf else {})}
        response = client.post(path, data=form, headers=_session(client), follow_redirects=False)
        assert response.status_code == 403, response.text[:300]
    assert snapshot(client, world) == before


@pytest.mark.parametrize(
    "endpoint", [e for e in CONSOLE if e.method == "GET"], ids=_ids([e for e in CONSOLE if e.method == "GET"])
)
def test_console_page_answers_an_ops_session(client, world, endpoint: Endpoint) -> None:
    response = call(client, endpoint, world, _session(client))
    assert response.status_code == 200, response.text[:300]
    document = endpoint.path.endswith("/pdf")  # I1/I2: a document's PDF
    assert response.headers["content-type"].startswith("application/pdf" if document else "text/html")


def test_console_sign_in_takes_only_a_valid_ops_token(client) -> None:
    page = client.get("/ops/login")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csrf = _login_csrf(client)
    for raw, status in (
        (None, 401),
        (BAD_AUTHORIZATION["expired"]().split()[1], 401),
        (BAD_AUTHORIZATION["hs512"]().split()[1], 401),
        (token(OWNER_SUB, "customer"), 403),
    ):
        response = client.post(
            "/ops/login", data={"csrf": csrf, **({"token": raw} if raw else {})}, follow_redirects=False
        )
        assert response.status_code == status, response.text[:300]
        assert "ops_session" not in response.headers.get("set-cookie", "")
    signed_in = client.post("/ops/login", data={"token": token("staff-1", "ops"), "csrf": csrf}, follow_redirects=False)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/ops"
    assert "ops_session=" in signed_in.headers["set-cookie"]
    client.cookies.clear()
    signed_out = client.post("/ops/logout", follow_redirects=False)
    assert _sent_to_login(signed_out)


# --- ops only ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", OPS_ONLY, ids=_ids(OPS_ONLY))
def test_ops_endpoint_refuses_a_customer_token_with_403_and_changes_nothing(
    client,
    world,
    endpoint: Endpoint,
) -> None:
    fill(endpoint, world)
    before = snapshot(client, world)
    response = call(client, endpoint, world, customer_headers(OWNER_SUB))
    assert_problem(response, 403, "forbidden")
    assert snapshot(client, world) == before


@pytest.mark.parametrize("endpoint", OPS_ONLY, ids=_ids(OPS_ONLY))
def test_ops_endpoint_accepts_an_ops_token(client, world, endpoint: Endpoint) -> None:
    response = call(client, endpoint, world, ops_headers())
    assert 200 <= response.status_code < 300, response.text


# --- any valid token --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ANY, ids=_ids(ANY))
def test_any_endpoint_accepts_a_customer_token(client, world, endpoint: Endpoint) -> None:
    response = call(client, endpoint, world, customer_headers("fresh-caller"))
    assert 200 <= response.status_code < 300, response.text


@pytest.mark.parametrize("endpoint", ANY, ids=_ids(ANY))
def test_any_endpoint_accepts_an_ops_token(client, world, endpoint: Endpoint) -> None:
    # The example bodies are written for a customer token; ops may be refused for the body's sake, not the token's.
    response = call(client, endpoint, world, ops_headers())
    assert response.status_code not in (401, 403, 404), response.text
    assert response.status_code < 500, response.text


# --- owner ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", OWNER, ids=_ids(OWNER))
def test_owner_endpoint_hides_another_customers_resource_with_404(
    client,
    world,
    endpoint: Endpoint,
) -> None:
    fill(endpoint, world)
    before = snapshot(client, world)
    for sub in (OTHER_SUB, "no-customer-yet"):  # another customer, and a token whose sub has no customer at all
        response = call(client, endpoint, world, customer_headers(sub))
        assert_problem(response, 404, "not_found")
        # Existence is not revealed: the answer is the one for an id that does not exist at all.
        missing = call(client, endpoint, Nowhere(), customer_headers(sub))
        assert_problem(missing, 404, "not_found")
        assert response.json()["title"] == missing.json()["title"]
    assert snapshot(client, world) == before


@pytest.mark.parametrize("endpoint", OWNER, ids=_ids(OWNER))
def test_owner_endpoint_answers_the_owner(client, world, endpoint: Endpoint) -> None:
    response = call(client, endpoint, world, customer_headers(OWNER_SUB))
    assert 200 <= response.status_code < 300, response.text


@pytest.mark.parametrize("endpoint", OWNER, ids=_ids(OWNER))
def test_owner_endpoint_answers_ops_for_any_customer(client, world, endpoint: Endpoint) -> None:
    response = call(client, endpoint, world, ops_headers())
    assert 200 <= response.status_code < 300, response.text


# --- the table is complete --------------------------------------------------------------------------------------


def _app_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every HTTP route, including those of included routers and the docs routes."""
    from fastapi.routing import APIRoute
    from starlette.routing import Route

    try:  # FastAPI versions that keep included routers as branches
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older versions flatten included routes into app.routes
        contexts = [(r, r.path, r.methods) for r in app.routes]
    else:
        contexts = [(rc.original_route, rc.path, rc.methods) for rc in iter_route_contexts(app.routes)]
    found = set()
    for route, path, methods in contexts:
        if not isinstance(route, (APIRoute, Route)):
            continue
        for method in methods or ():
            if method != "HEAD":
                found.add((method, path))
    return found


def test_every_route_of_the_app_is_in_the_endpoint_table(app) -> None:
    routes = _app_routes(app)
    assert ("GET", "/v1/plans") in routes and ("GET", "/docs") in routes  # the walk itself works
    table = {(e.method, e.path) for e in ENDPOINTS}
    missing = sorted(routes - table)
    assert not missing, f"add these endpoints to tests/api/endpoints.py: {missing}"
    stale = sorted(table - routes)
    assert not stale, f"endpoints in the table that the app does not serve: {stale}"


def test_every_documented_operation_is_in_the_endpoint_table(client) -> None:
    document = client.get("/openapi.json").json()
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    missing = sorted(documented - {(e.method, e.path) for e in ENDPOINTS})
    assert not missing, f"add these endpoints to tests/api/endpoints.py: {missing}"


def test_endpoint_table_has_no_duplicates_and_known_access() -> None:
    keys = [(e.method, e.path) for e in ENDPOINTS]
    assert len(keys) == len(set(keys))
    assert {e.access for e in ENDPOINTS} <= {"public", "any", "owner", "ops", "signed", "console", "console_sign_in"}
