"""Plans: the public catalogue of active plans, and the ops that maintain it (create, price change (B3),
deactivation)."""

from __future__ import annotations

import pytest

from tests.api import shared
from tests.conftest import START, make_plan, ops_headers

client = shared.client  # fixtures: one app per module, see tests/api/shared.py
module_client = shared.module_client

BODY = {
    "code": "pro-yearly",
    "name": "Pro, yearly",
    "tier": "subscription",
    "interval": "year",
    "amount": 19900,
    "currency": "eur",
    "trial_available": True,
}


def create(client, **overrides):
    return client.post("/v1/plans", json={**BODY, **overrides}, headers=ops_headers())


def listed(client) -> list[str]:
    return [p["code"] for p in client.get("/v1/plans", params={"limit": 100}).json()["data"]]


def refused(response, field: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in {e["field"] for e in body["errors"]}, body


def test_ops_create_a_plan(client) -> None:
    response = create(client)
    assert response.status_code == 201, response.text
    plan = response.json()
    assert {k: plan[k] for k in ("code", "name", "tier", "interval", "trial_available")} == {
        "code": "pro-yearly",
        "name": "Pro, yearly",
        "tier": "subscription",
        "interval": "year",
        "trial_available": True,
    }
    assert plan["price"] == {"amount": 19900, "currency": "eur"}
    assert isinstance(plan["id"], str) and plan["id"]
    assert plan["created_at"] == START
    assert client.get("/v1/plans/pro-yearly").json() == plan
    assert client.get("/v1/plans").json()["data"] == [plan]


@pytest.mark.parametrize(
    "tier,interval",
    [("subscription", "month"), ("subscription", "year"), ("enterprise", "month"), ("enterprise", "year")],
)
def test_every_tier_and_interval_can_be_created(client, tier: str, interval: str) -> None:
    plan = create(client, tier=tier, interval=interval).json()
    assert (plan["tier"], plan["interval"]) == (tier, interval)


def test_trial_available_defaults_to_false(client) -> None:
    body = {k: v for k, v in BODY.items() if k != "trial_available"}
    response = client.post("/v1/plans", json=body, headers=ops_headers())
    assert response.status_code == 201, response.text
    assert response.json()["trial_available"] is False


def test_a_free_plan_has_amount_zero(client) -> None:
    assert create(client, amount=0).json()["price"] == {"amount": 0, "currency": "eur"}


def test_a_used_code_is_409_plan_exists(client) -> None:
    first = create(client).json()
    response = create(client, name="Other", amount=1, currency="usd")
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "plan_exists"
    assert client.get("/v1/plans/pro-yearly").json() == first


@pytest.mark.parametrize(
    "field,value",
    [
        ("tier", "gold"),
        ("tier", "Subscription"),
        ("tier", None),
        ("interval", "week"),
        ("interval", "monthly"),
        ("interval", "Month"),
        ("currency", "USD"),
        ("currency", "xyz"),
        ("currency", "us"),
        ("currency", ""),
        ("currency", "euro"),
        ("amount", -1),
        ("amount", 10.5),
        ("amount", 10.0),
        ("amount", "1000"),
        ("amount", True),
        ("amount", None),
        ("amount", 10**13),
        ("code", "Pro Yearly"),
        ("code", ""),
        ("code", "x" * 65),
        ("name", ""),
        ("trial_available", "maybe"),
    ],
)
def test_invalid_plan_is_422_and_nothing_stored(client, field: str, value) -> None:
    response = create(client, **{field: value})
    refused(response, field)
    assert listed(client) == []
    assert client.get(f"/v1/plans/{BODY['code']}").status_code == 404


@pytest.mark.parametrize("field", ["code", "name", "tier", "interval", "amount", "currency"])
def test_a_missing_field_is_422(client, field: str) -> None:
    response = client.post("/v1/plans", json={k: v for k, v in BODY.items() if k != field}, headers=ops_headers())
    refused(response, field)
    assert listed(client) == []


def test_the_list_shows_only_active_plans(client) -> None:
    make_plan(client, "kept")
    make_plan(client, "retired")
    response = client.patch("/v1/plans/retired", json={"active": False}, headers=ops_headers())
    assert response.status_code == 200, response.text
    assert response.json()["active"] is False
    assert listed(client) == ["kept"]
    response = client.patch("/v1/plans/retired", json={"active": True}, headers=ops_headers())
    assert response.json()["active"] is True
    assert listed(client) == ["retired", "kept"]


def test_B3_a_list_price_change_changes_the_plan(client) -> None:
    plan = make_plan(client, "pro-monthly", amount=2000)
    other = make_plan(client, "other", amount=3000)
    response = client.patch("/v1/plans/pro-monthly", json={"amount": 2500}, headers=ops_headers())
    assert response.status_code == 200, response.text
    changed = {**plan, "price": {"amount": 2500, "currency": "usd"}}
    assert response.json() == changed
    assert client.get("/v1/plans/pro-monthly").json() == changed
    assert client.get("/v1/plans/other").json() == other
    # a subscription bought before the change keeps its price: covered with the subscription tests


def test_patch_amount_and_active_together(client) -> None:
    make_plan(client, "pro-monthly", amount=2000)
    response = client.patch("/v1/plans/pro-monthly", json={"amount": 0, "active": False}, headers=ops_headers())
    assert response.status_code == 200
    assert (response.json()["price"]["amount"], response.json()["active"]) == (0, False)
    assert listed(client) == []


def test_an_empty_patch_changes_nothing(client) -> None:
    plan = make_plan(client, "pro-monthly")
    response = client.patch("/v1/plans/pro-monthly", json={}, headers=ops_headers())
    assert response.status_code == 200 and response.json() == plan


@pytest.mark.parametrize(
    "body",
    [{"amount": -1}, {"amount": 12.5}, {"amount": "100"}, {"amount": None}, {"active": None}, {"active": "perhaps"}],
    ids=["negative", "float", "string", "null_amount", "null_active", "bad_active"],
)
def test_an_invalid_patch_is_422_and_changes_nothing(client, body: dict) -> None:
    plan = make_plan(client, "pro-monthly")
    refused(client.patch("/v1/plans/pro-monthly", json=body, headers=ops_headers()), next(iter(body)))
    assert client.get("/v1/plans/pro-monthly").json() == plan


def test_patching_an_unknown_plan_is_404(client) -> None:
    response = client.patch("/v1/plans/nope", json={"amount": 1}, headers=ops_headers())
    assert response.status_code == 404 and response.json()["code"] == "plan_not_found"


def test_an_unknown_plan_is_404(client) -> None:
    response = client.get("/v1/plans/nope")
    assert response.status_code == 404 and response.json()["code"] == "plan_not_found"
