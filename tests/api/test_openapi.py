"""The OpenAPI document (/openapi.json) describes the responses the app really sends: every refusal is an
`application/problem+json` Problem (api.md "Conventions"; 422: a ValidationProblem listing the fields), each
operation documents the problem statuses it can answer with (who may call it per tests/api/endpoints.py, its body
limit, its domain refusals), and /metrics is Prometheus text. Real refusals are checked against what is documented
for their operation and status."""

from __future__ import annotations

import json
import re

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CONTENT_TYPE_LATEST

from app.errors import ERROR_TABLE
from app.openapi import DOMAIN_REFUSALS
from tests.api import shared
from tests.api.endpoints import ENDPOINTS, Endpoint
from tests.conftest import customer_headers, make_customer, make_plan, make_settings, ops_headers
from tests.support.webhooks import intent_event, post_event

client = shared.client  # fixtures: one app per module, see tests/api/shared.py
module_client = shared.module_client

PROBLEM_JSON = "application/problem+json"
PROBLEM_REFS = {"#/components/schemas/Problem", "#/components/schemas/ValidationProblem"}


@pytest.fixture(scope="module")
def document(module_client) -> dict:
    response = module_client.get("/openapi.json")
    assert response.status_code == 200, response.text
    return response.json()


def responses_of(document: dict, method: str, path: str) -> dict:
    return document["paths"][path][method.lower()]["responses"]


def assert_documented(document: dict, method: str, path: str, response) -> None:
    """The response's status and media type are documented for the operation, and its body matches the schema."""
    documented = responses_of(document, method, path)
    status = str(response.status_code)
    assert status in documented, f"{method} {path}: {status} not documented (only {sorted(documented)})"
    media_type = response.headers["content-type"].split(";")[0].strip()
    content = documented[status].get("content", {})
    assert media_type in content, f"{method} {path} {status}: served as {media_type}, documented {sorted(content)}"
    validator = jsonschema_rs.validator_for({**content[media_type]["schema"], "components": document["components"]})
    errors = [e.message for e in validator.iter_errors(response.json())]
    assert not errors, (method, path, status, errors, response.text[:300])


# --- the document -------------------------------------------------------------------------------------------------


def test_every_documented_error_is_problem_json_and_the_framework_422_is_gone(document) -> None:
    assert "HTTPValidationError" not in json.dumps(document)
    assert not {"HTTPValidationError", "ValidationError"} & set(document["components"]["schemas"])
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                assert list(response["content"]) == [PROBLEM_JSON], (method, path, status)
                ref = response["content"][PROBLEM_JSON]["schema"]["$ref"]
                assert ref == (
                    "#/components/schemas/ValidationProblem" if status == "422" else "#/components/schemas/Problem"
                ), (method, path, status)
                named = [
                    code
                    for code, (code_status, _title) in ERROR_TABLE.items()
                    if code_status == int(status) and f"`{code}`" in response["description"]
                ]
                assert named, (method, path, status, response["description"])  # which codes it may carry


def test_the_problem_components_carry_the_contract_fields(document) -> None:
    schemas = document["components"]["schemas"]
    problem = schemas["Problem"]
    assert problem["required"] == ["type", "title", "status", "detail", "code"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["properties"])
    assert problem["properties"]["detail"]["type"] == "string"  # a sentence, not FastAPI's list of errors
    assert problem.get("additionalProperties", True) is True  # some problems carry more, e.g. retry_after
    assert {"$ref": "#/components/schemas/Problem"} in schemas["ValidationProblem"]["allOf"]
    [errors] = [part["properties"]["errors"] for part in schemas["ValidationProblem"]["allOf"] if "properties" in part]
    assert errors["items"] == {"$ref": "#/components/schemas/FieldError"}
    assert schemas["FieldError"]["required"] == ["field", "location", "message"]


DOCUMENTED_ENDPOINTS = [
    e
    for e in ENDPOINTS
    if not e.access.startswith("console")
    and e.path not in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
]


@pytest.mark.parametrize("endpoint", DOCUMENTED_ENDPOINTS, ids=[e.id for e in DOCUMENTED_ENDPOINTS])
def test_each_operation_documents_the_refusals_of_its_access_class(document, endpoint: Endpoint) -> None:
    statuses = set(responses_of(document, endpoint.method, endpoint.path))
    needs_token = endpoint.access in ("any", "owner", "ops")
    assert ("401" in statuses) == needs_token, statuses
    assert ("403" in statuses) == (endpoint.access == "ops"), statuses
    assert ("400" in statuses) == (endpoint.access == "signed"), statuses  # the webhook's bad signature
    if "{" in endpoint.path:
        assert "404" in statuses and "422" in statuses, statuses  # ids that do not exist or are not the caller's
    if endpoint.method in ("POST", "PATCH"):
        assert {"413", "422"} <= statuses, statuses  # body limit; validation (every POST: its Idempotency-Key)
    if endpoint.method == "POST" and needs_token:
        assert "409" in statuses, statuses  # idempotency_key_in_use
    assert "429" not in statuses  # the tests run without rate limits: none is documented


def test_the_domain_refusal_table_names_documented_operations_and_known_codes(document) -> None:
    for (method, path), codes in DOMAIN_REFUSALS.items():
        documented = responses_of(document, method, path)
        for code in codes:
            assert code in ERROR_TABLE, code
            assert f"`{code}`" in documented[str(ERROR_TABLE[code][0])]["description"], (method, path, code)


def test_metrics_is_documented_as_prometheus_text_and_served_as_before(module_client, document) -> None:
    assert list(responses_of(document, "GET", "/metrics")["200"]["content"]) == ["text/plain"]
    response = module_client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert "# TYPE " in response.text and not response.text.startswith('"')  # Prometheus text, not a JSON string


def test_the_document_is_built_once(module_client) -> None:
    app = module_client.app
    first = module_client.get("/openapi.json").json()
    assert app.openapi() is app.openapi() is app.openapi_schema
    assert module_client.get("/openapi.json").json() == first


def test_rate_limits_are_documented_when_they_are_on(database_url: str, clean_db: str) -> None:
    from app.main import create_app

    with TestClient(
        create_app(make_settings(database_url, rate_limit_writes_per_minute=1)), raise_server_exceptions=False
    ) as limited:
        document = limited.get("/openapi.json").json()
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                writes_with_token = method in ("post", "patch", "delete") and "401" in operation["responses"]
                assert ("429" in operation["responses"]) == writes_with_token, (method, path)
        documented = responses_of(document, "POST", "/v1/customers")["429"]
        assert "Retry-After" in documented["headers"]
        body = {"email": "rl@example.com", "name": "Rate Limited", "country": "US"}
        assert limited.post("/v1/customers", json=body, headers=customer_headers("rl")).status_code == 201
        refused = limited.post("/v1/customers", json=body, headers=customer_headers("rl"))
        assert refused.status_code == 429 and refused.headers["retry-after"]
        assert_documented(document, "POST", "/v1/customers", refused)


# --- real refusals against the document ---------------------------------------------------------------------------


def test_real_refusals_match_what_is_documented_for_their_operation(client, document) -> None:
    plan = make_plan(client, "doc-plan")
    alice = make_customer(client, "doc-alice")
    bob = make_customer(client, "doc-bob")
    sub = client.post(
        "/v1/subscriptions",
        json={"customer_id": alice["id"], "plan": plan["code"], "payment_method": "pm_card_visa"},
        headers=customer_headers("doc-alice"),
    )
    assert sub.status_code == 201, sub.text
    [payment] = client.get(f"/v1/customers/{alice['id']}/payments", headers=ops_headers()).json()["data"]
    plan_body = {
        "code": "doc-plan",
        "name": "Doc",
        "tier": "subscription",
        "interval": "month",
        "amount": 100,
        "currency": "usd",
        "trial_available": False,
    }
    cases = [  # (method, documented path, path, kwargs, expected status, expected code)
        ("POST", "/v1/plans", "/v1/plans", {"json": plan_body}, 401, "unauthenticated"),
        (
            "POST",
            "/v1/plans",
            "/v1/plans",
            {"json": plan_body, "headers": customer_headers("doc-alice")},
            403,
            "forbidden",
        ),
        ("POST", "/v1/plans", "/v1/plans", {"json": plan_body, "headers": ops_headers()}, 409, "plan_exists"),
        ("POST", "/v1/plans", "/v1/plans", {"json": {"code": "x"}, "headers": ops_headers()}, 422, "validation_error"),
        (
            "POST",
            "/v1/plans",
            "/v1/plans",
            {
                "content": b"{" + b" " * (2 * 1024 * 1024) + b"}",
                "headers": {**ops_headers(), "Content-Type": "application/json"},
            },
            413,
            "payload_too_large",
        ),
        ("GET", "/v1/plans/{code}", "/v1/plans/no-such-plan", {}, 404, "plan_not_found"),
        (
            "GET",
            "/v1/customers/{customer_id}",
            f"/v1/customers/{alice['id']}",
            {"headers": customer_headers("doc-bob")},
            404,
            "not_found",
        ),
        (
            "GET",
            "/v1/customers/{customer_id}/payments",
            f"/v1/customers/{alice['id']}/payments",
            {"params": {"limit": 1000}, "headers": ops_headers()},
            422,
            "validation_error",
        ),
        (
            "POST",
            "/v1/subscriptions",
            "/v1/subscriptions",
            {
                "json": {"customer_id": bob["id"], "plan": plan["code"], "payment_method": "pm_card_chargeDeclined"},
                "headers": customer_headers("doc-bob"),
            },
            402,
            "card_declined",
        ),
        (
            "POST",
            "/v1/subscriptions",
            "/v1/subscriptions",
            {
                "json": {"customer_id": alice["id"], "plan": plan["code"], "payment_method": "pm_card_visa"},
                "headers": customer_headers("doc-alice"),
            },
            409,
            "subscription_exists",
        ),
        (
            "POST",
            "/v1/payments/{payment_id}/refunds",
            f"/v1/payments/{payment['id']}/refunds",
            {"json": {"amount": payment["amount"] + 1, "reason": "too much"}, "headers": ops_headers()},
            422,
            "refund_exceeds_payment",
        ),
        (
            "POST",
            "/v1/sandbox/clock",
            "/v1/sandbox/clock",
            {"json": {"now": "2020-01-01T00:00:00Z"}, "headers": ops_headers()},
            409,
            "clock_backwards",
        ),
        (
            "POST",
            "/v1/webhooks/stripe",
            "/v1/webhooks/stripe",
            {"content": b"{}", "headers": {"Stripe-Signature": "t=1,v1=00"}},
            400,
            "invalid_signature",
        ),
        (
            "POST",
            "/v1/customers/{customer_id}/credits",
            f"/v1/customers/{alice['id']}/credits",
            {
                "json": {"amount": 1, "currency": "usd", "reason": "r"},
                "headers": {**ops_headers(), "Idempotency-Key": ""},
            },
            422,
            "validation_error",
        ),
    ]
    for method, documented_path, path, kwargs, status, code in cases:
        response = client.request(method, path, **kwargs)
        assert response.status_code == status and response.json()["code"] == code, (path, response.text[:300])
        assert_documented(document, method, documented_path, response)

    # The same Idempotency-Key with another body: 422 idempotency_key_reused, documented with the 422s.
    key = {**ops_headers(), "Idempotency-Key": "doc-key-1"}
    credit = f"/v1/customers/{alice['id']}/credits"
    assert client.post(credit, json={"amount": 1, "currency": "usd", "reason": "r"}, headers=key).status_code == 201
    reused = client.post(credit, json={"amount": 2, "currency": "usd", "reason": "r"}, headers=key)
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused", reused.text
    assert_documented(document, "POST", "/v1/customers/{customer_id}/credits", reused)


def test_a_signed_webhook_is_still_documented_as_json(client, document) -> None:
    response = post_event(client, intent_event("payment_intent.succeeded", "pi_unknown"), "whsec_sandbox")
    assert response.status_code == 200, response.text
    assert_documented(document, "POST", "/v1/webhooks/stripe", response)


# --- the documentation pages (Swagger UI, ReDoc) ----------------------------------------------------------------


def test_the_bearer_scheme_is_declared_and_every_operation_with_a_token_requires_it(document) -> None:
    """ "Authorize" in /docs works: the token is an HTTP bearer scheme and each operation that needs one says so."""
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": document["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    for endpoint in DOCUMENTED_ENDPOINTS:
        operation = document["paths"][endpoint.path][endpoint.method.lower()]
        needs_token = endpoint.access in ("any", "owner", "ops")
        assert (operation.get("security") == [{"bearerAuth": []}]) == needs_token, endpoint.id


ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|(?:url|spec-url)\s*[:=]\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_everything_from_the_service_itself(client, page: str) -> None:
    """No CDN: every script, stylesheet and icon the page names is a path on this service, and it is served."""
    html = client.get(page).text
    references = [a or b for a, b in ASSET.findall(html)]
    assert any(ref.endswith(".js") for ref in references), references
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}", html, re.IGNORECASE), html
    for ref in references:
        assert ref.startswith("/"), ref
        response = client.get(ref)
        assert response.status_code == 200, ref
