"""Security configuration (OWASP API8, API7): production refuses development secrets, unexpected errors reveal
nothing, and no request field makes the service fetch a caller-given URL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.config import DEV_AUTH_SECRET
from app.main import create_app
from tests.conftest import make_settings


@pytest.mark.parametrize("secret", ["", DEV_AUTH_SECRET, "short"])
def test_outside_the_sandbox_a_real_auth_secret_is_required(clean_db, secret):
    with pytest.raises(RuntimeError, match="BILLING_AUTH_SECRET"):
        create_app(make_settings(clean_db, sandbox=False, stripe_api_key="sk_test_x", auth_secret=secret))


def test_an_unexpected_error_is_a_plain_500_problem(clean_db):
    app = create_app(make_settings(clean_db))

    async def boom():
        raise RuntimeError("secret internals: password=hunter2")

    app.add_api_route("/test-only/boom", boom)  # a route of this test's own, to reach the generic handler
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/test-only/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "internal_error"
    assert "hunter2" not in response.text and "Traceback" not in response.text


def test_no_request_field_takes_a_url(client):
    """API7: the service calls only the Stripe and SMTP endpoints of its configuration, never a URL from a caller."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name, schema in schemas.items():
        for field, spec in (schema.get("properties") or {}).items():
            assert "url" not in field.lower() and "uri" not in field.lower(), (name, field)
            assert spec.get("format") not in ("uri", "url"), (name, field)
