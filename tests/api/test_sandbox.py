"""The sandbox: a clock kept in the database that only moves forward, running due jobs on demand, and both
gone (404) when the sandbox is off."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.api import shared
from tests.conftest import (
    START,
    customer_headers,
    make_customer,
    make_settings,
    ops_headers,
)

client = shared.client  # fixtures: one app per module, see tests/api/shared.py
module_client = shared.module_client


def clock(client, headers: dict | None = None) -> str:
    response = client.get("/v1/sandbox/clock", headers=headers or ops_headers())
    assert response.status_code == 200, response.text
    return response.json()["now"]


def move(client, now: str):
    return client.post("/v1/sandbox/clock", json={"now": now}, headers=ops_headers())


def test_any_token_reads_the_clock(client) -> None:
    assert clock(client, customer_headers("user-1")) == START
    assert clock(client, ops_headers()) == START


def test_ops_move_the_clock_forward(client) -> None:
    response = move(client, "2030-02-15T08:30:00Z")
    assert response.status_code == 200, response.text
    assert response.json()["now"] == "2030-02-15T08:30:00Z"
    assert clock(client) == "2030-02-15T08:30:00Z"
    # business time is the clock's: what is created now carries it
    assert make_customer(client, "user-1")["created_at"] == "2030-02-15T08:30:00Z"


def test_moving_to_the_current_time_is_allowed(client) -> None:
    assert move(client, START).status_code == 200
    assert clock(client) == START


@pytest.mark.parametrize(
    "target",
    ["2030-01-15T11:59:59Z", "2029-12-31T00:00:00Z", "2030-01-15T13:00:00+02:00"],
    ids=["one_second", "one_year", "offset"],
)
def test_moving_the_clock_back_is_409(client, target: str) -> None:
    response = move(client, target)
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "clock_backwards"
    assert clock(client) == START


@pytest.mark.parametrize("target", ["2030-02-01T00:00:00", "2030-02-01", "next tuesday", "", None])
def test_a_time_without_zone_or_not_a_time_is_422(client, target) -> None:
    response = move(client, target)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert "now" in {e["field"] for e in response.json()["errors"]}
    assert clock(client) == START


def test_run_due_returns_the_time_and_what_each_job_did(client) -> None:
    move(client, "2030-03-01T00:00:00Z")
    response = client.post("/v1/sandbox/run-due", headers=ops_headers())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["now"] == "2030-03-01T00:00:00Z"
    assert isinstance(body["jobs"], dict) and body["jobs"]
    assert all(isinstance(name, str) and type(count) is int and count >= 0 for name, count in body["jobs"].items())
    # run again at the same time: everything due was already done
    again = client.post("/v1/sandbox/run-due", headers=ops_headers()).json()
    assert set(again["jobs"]) == set(body["jobs"])
    assert all(count == 0 for count in again["jobs"].values())
    assert clock(client) == "2030-03-01T00:00:00Z"  # running jobs does not move the clock


def test_every_replica_sees_the_same_clock(client, settings) -> None:
    move(client, "2030-06-01T00:00:00Z")
    with TestClient(create_app(settings), raise_server_exceptions=False) as replica:
        assert clock(replica) == "2030-06-01T00:00:00Z"
        assert move(replica, "2030-07-01T00:00:00Z").status_code == 200
    assert clock(client) == "2030-07-01T00:00:00Z"
    assert move(client, "2030-06-15T00:00:00Z").json()["code"] == "clock_backwards"


SANDBOX_CALLS = [
    ("GET", "/v1/sandbox/clock", None),
    ("POST", "/v1/sandbox/clock", {"now": "2031-01-01T00:00:00Z"}),
    ("POST", "/v1/sandbox/run-due", None),
]


def test_without_the_sandbox_its_paths_are_404(clean_db: str) -> None:
    settings = make_settings(clean_db, sandbox=False, stripe_api_key="sk_test_x")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200  # the service itself runs
        assert client.get("/v1/plans").status_code == 200
        for method, path, body in SANDBOX_CALLS:
            for headers in (ops_headers(), customer_headers("user-1"), {}):
                response = client.request(method, path, json=body, headers=headers)
                assert response.status_code == 404, (method, path, response.text)
                assert response.json()["code"] == "not_found"
        paths = client.get("/openapi.json").json()["paths"]
        assert not [p for p in paths if p.startswith("/v1/sandbox")]


def test_with_the_sandbox_its_paths_exist(client) -> None:
    """The control for the test above: the same calls answer when the sandbox is on."""
    for method, path, body in SANDBOX_CALLS:
        response = client.request(method, path, json=body, headers=ops_headers())
        assert response.status_code == 200, (method, path, response.text)
