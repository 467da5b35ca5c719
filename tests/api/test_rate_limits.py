"""Writes are rate-limited per caller: 429 `rate_limited` with Retry-After; reads and other callers unaffected."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import customer_headers, make_settings


def test_writes_are_limited_per_caller(clean_db):
    with TestClient(create_app(make_settings(clean_db, rate_limit_writes_per_minute=5))) as client:
        statuses = []
        for i in range(7):
            response = client.post(
                "/v1/customers",
                json={"email": f"a{i}@example.com", "name": "A", "country": "US"},
                headers=customer_headers(f"flood-{i % 1}"),
            )
            statuses.append(response.status_code)
        assert statuses[:5] == [201, 409, 409, 409, 409] and statuses[5:] == [429, 429]
        limited = client.post(
            "/v1/customers",
            json={"email": "a@example.com", "name": "A", "country": "US"},
            headers=customer_headers("flood-0"),
        )
        assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
        assert limited.headers["content-type"] == "application/problem+json"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        # Reads are not limited, and another caller still writes.
        assert client.get("/v1/plans").status_code == 200
        other = client.post(
            "/v1/customers",
            json={"email": "b@example.com", "name": "B", "country": "US"},
            headers=customer_headers("someone-else"),
        )
        assert other.status_code == 201
