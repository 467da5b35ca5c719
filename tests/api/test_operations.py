"""Operations: health, readiness, Prometheus metrics, the OpenAPI document, request ids, CORS and the body limit."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from tests.api import shared
from tests.conftest import customer_headers, make_plan, make_settings, ops_headers

client = shared.client  # fixtures: one app per module, see tests/api/shared.py
module_client = shared.module_client

MAX_BODY = 1024 * 1024
ALLOWED_ORIGIN = "https://app.example.com"


def assert_problem(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"] and body["title"] and body["detail"]


# --- health and readiness ---------------------------------------------------------------------------------------


def test_healthz(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_readyz_when_the_database_is_reachable(client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text


def test_readyz_is_503_when_the_database_is_unreachable() -> None:
    settings = make_settings("postgresql://postgres@127.0.0.1:1/x")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:  # starts without its database
        assert client.get("/healthz").status_code == 200  # alive, but
        response = client.get("/readyz")
        assert_problem(response, 503, "service_unavailable")
        assert "127.0.0.1" not in response.text and "postgres" not in response.text.lower()  # no connection details
        assert response.headers["x-request-id"]


# --- metrics ----------------------------------------------------------------------------------------------------


def _samples(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}  # parses as Prometheus text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}


def _delta(after: dict, before: dict) -> dict:
    """What the requests between two scrapes added (the app, and so its counters, serves the whole module)."""
    return {key: value - before.get(key, 0) for key, value in after.items()}


def test_metrics_count_requests_by_route_template_and_time_them(client) -> None:
    make_plan(client, "pro-monthly")
    before = _samples(client)
    for _ in range(3):
        assert client.get("/v1/plans/pro-monthly").status_code == 200
    client.get("/v1/plans/nope")
    samples = _delta(_samples(client), before)
    get_plan = (("method", "GET"), ("route", "/v1/plans/{code}"))
    assert samples[("billing_http_requests_total", (*get_plan, ("status", "200")))] == 3
    assert samples[("billing_http_requests_total", (*get_plan, ("status", "404")))] == 1
    # the latency histogram: a count, a sum and cumulative buckets up to +Inf
    assert samples[("billing_http_request_duration_seconds_count", get_plan)] == 4
    assert samples[("billing_http_request_duration_seconds_sum", get_plan)] > 0
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in samples.items()
        if name == "billing_http_request_duration_seconds_bucket"
        and (dict(labels)["method"], dict(labels)["route"]) == ("GET", "/v1/plans/{code}")
    )
    assert len(buckets) > 5
    assert buckets[-1] == (float("inf"), 4)
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    # no label per raw path (ids would explode the series)
    assert not [labels for (_, labels) in samples if ("route", "/v1/plans/pro-monthly") in labels]


def test_metrics_need_no_token_and_count_refusals(client) -> None:
    before = _samples(client)
    client.get("/v1/sandbox/clock")
    samples = _delta(_samples(client), before)
    key = ("billing_http_requests_total", (("method", "GET"), ("route", "/v1/sandbox/clock"), ("status", "401")))
    assert samples[key] == 1


# --- OpenAPI ----------------------------------------------------------------------------------------------------


def test_openapi_document_loads(client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    for path in ("/v1/customers", "/v1/customers/{customer_id}", "/v1/plans", "/v1/plans/{code}", "/healthz"):
        assert path in document["paths"], path


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_load(client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in response.text


# --- request ids ------------------------------------------------------------------------------------------------

REQUESTS = {
    "ok": lambda c, h: c.get("/v1/plans", headers=h),
    "created": lambda c, h: c.post(
        "/v1/plans",
        json={"code": "p", "name": "P", "tier": "subscription", "interval": "month", "amount": 1, "currency": "usd"},
        headers={**ops_headers(), **h},
    ),
    "unauthenticated": lambda c, h: c.get("/v1/sandbox/clock", headers=h),
    "forbidden": lambda c, h: c.post("/v1/sandbox/run-due", headers={**customer_headers("u"), **h}),
    "not_found": lambda c, h: c.get("/nowhere", headers=h),
    "invalid": lambda c, h: c.get("/v1/plans", params={"limit": 0}, headers=h),
    "too_large": lambda c, h: c.post(
        "/v1/plans", content=b"x" * (MAX_BODY + 1), headers={**ops_headers(), "content-type": "application/json", **h}
    ),
    "metrics": lambda c, h: c.get("/metrics", headers=h),
    "healthz": lambda c, h: c.get("/healthz", headers=h),
    "docs": lambda c, h: c.get("/docs", headers=h),
}


@pytest.mark.parametrize("kind", sorted(REQUESTS))
def test_every_response_has_a_request_id_and_echoes_a_sane_one(client, kind: str) -> None:
    first = REQUESTS[kind](client, {})
    second = REQUESTS[kind](client, {})
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    echoed = REQUESTS[kind](client, {"X-Request-ID": "trace-42.abc_DEF"})
    assert echoed.headers["x-request-id"] == "trace-42.abc_DEF"


@pytest.mark.parametrize("incoming", ["has spaces", "x" * 65, "<script>", "a\u00e9b", "line;break"])
def test_an_unsafe_incoming_request_id_is_replaced(client, incoming: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": incoming.encode("utf-8")})
    assert response.headers["x-request-id"] != incoming
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", response.headers["x-request-id"])


# --- CORS -------------------------------------------------------------------------------------------------------


@pytest.fixture
def cors_client(clean_db: str):
    settings = make_settings(clean_db, cors_origins=[ALLOWED_ORIGIN])
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _preflight(client, origin: str):
    return client.options(
        "/v1/plans",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )


def test_cors_preflight_is_allowed_for_a_configured_origin(cors_client) -> None:
    response = _preflight(cors_client, ALLOWED_ORIGIN)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "idempotency-key"):
        assert header in allowed_headers
    simple = cors_client.get("/v1/plans", headers={"Origin": ALLOWED_ORIGIN})
    assert simple.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


@pytest.mark.parametrize(
    "origin", ["https://evil.example.com", "http://app.example.com", "https://app.example.com.evil.net"]
)
def test_cors_preflight_is_refused_for_other_origins(cors_client, origin: str) -> None:
    response = _preflight(cors_client, origin)
    assert response.status_code >= 400
    assert "access-control-allow-origin" not in response.headers
    simple = cors_client.get("/v1/plans", headers={"Origin": origin})
    assert "access-control-allow-origin" not in simple.headers


def test_without_configured_origins_no_cross_origin_access(client) -> None:
    response = _preflight(client, ALLOWED_ORIGIN)
    assert "access-control-allow-origin" not in response.headers


# --- body limit -------------------------------------------------------------------------------------------------


def _plan_body(padding: int) -> bytes:
    """A plan body whose name is `padding` characters: valid JSON of a chosen size."""
    return (
        b'{"code": "big", "tier": "subscription", "interval": "month", "amount": 1, "currency": "usd", '
        b'"name": "' + b"n" * padding + b'"}'
    )


def _chunks(data: bytes, size: int = 64 * 1024):
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("transfer", ["content_length", "chunked"])
def test_a_body_over_1_mib_is_413_and_stores_nothing(client, transfer: str) -> None:
    body = _plan_body(MAX_BODY)
    content = body if transfer == "content_length" else _chunks(body)
    for extra in ({}, {"Idempotency-Key": "big-1"}):
        response = client.post(
            "/v1/plans", content=content, headers={**ops_headers(), "content-type": "application/json", **extra}
        )
        assert_problem(response, 413, "payload_too_large")
        assert response.headers["x-request-id"]
        content = body if transfer == "content_length" else _chunks(body)
    assert client.get("/v1/plans/big").status_code == 404
    # the refused key was not kept: a normal request may use it
    small = client.post(
        "/v1/plans",
        content=_plan_body(10),
        headers={**ops_headers(), "content-type": "application/json", "Idempotency-Key": "big-1"},
    )
    assert small.status_code == 201, small.text
    assert "idempotent-replayed" not in small.headers


@pytest.mark.parametrize("transfer", ["content_length", "chunked"])
def test_a_body_of_exactly_1_mib_is_read(client, transfer: str) -> None:
    body = _plan_body(0)
    body = _plan_body(MAX_BODY - len(body))
    assert len(body) == MAX_BODY
    content = body if transfer == "content_length" else _chunks(body)
    response = client.post("/v1/plans", content=content, headers={**ops_headers(), "content-type": "application/json"})
    # read and validated (the name is too long), not refused for its size
    assert response.status_code == 422, response.text[:300]
    assert "name" in {e["field"] for e in response.json()["errors"]}


def test_a_chunked_body_under_the_limit_works(client) -> None:
    response = client.post(
        "/v1/plans",
        content=_chunks(_plan_body(20), size=7),
        headers={**ops_headers(), "content-type": "application/json"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "n" * 20
