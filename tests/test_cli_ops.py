"""The ops CLI (`billing refund`, `credit`, `suspend`, `unsuspend`, `terminate`) calls the same services as the
API (R2, R3)."""

from __future__ import annotations

import json

import pytest

from app.cli import main
from tests.api.test_ops_actions import buy, payments_of
from tests.conftest import SECRET, make_customer, make_plan, ops_headers


@pytest.fixture
def cli_env(monkeypatch, clean_db):
    monkeypatch.setenv("BILLING_DATABASE_URL", clean_db)
    monkeypatch.setenv("BILLING_AUTH_SECRET", SECRET)
    monkeypatch.setenv("BILLING_SANDBOX", "true")
    monkeypatch.setenv("BILLING_LOG_LEVEL", "WARNING")


def test_R2_R3_ops_cli(client, cli_env, capsys):
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    buy(client, alice)
    [payment] = payments_of(client, alice)

    assert (
        main(
            ["refund", "--payment", payment["id"], "--amount", "500", "--reason", "phone complaint", "--staff", "ops-7"]
        )
        == 0
    )
    refund = json.loads(capsys.readouterr().out)
    assert refund["amount"] == 500 and refund["created_by"] == "ops-7" and refund["reason"] == "phone complaint"
    assert main(["refund", "--payment", payment["id"], "--amount", "1501", "--reason", "x", "--staff", "ops-7"]) == 1
    assert json.loads(capsys.readouterr().err)["code"] == "refund_exceeds_payment"
    assert main(["refund", "--payment", payment["id"], "--amount", "1", "--reason", "  ", "--staff", "ops-7"]) == 2
    assert "reason" in capsys.readouterr().err

    assert (
        main(
            [
                "credit",
                "--customer",
                alice["id"],
                "--amount",
                "300",
                "--currency",
                "usd",
                "--reason",
                "sorry",
                "--staff",
                "ops-7",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["kind"] == "grant"
    # R2: a credit in another currency than the customer's billing one is refused, as through the API.
    assert (
        main(
            [
                "credit",
                "--customer",
                alice["id"],
                "--amount",
                "300",
                "--currency",
                "eur",
                "--reason",
                "sorry",
                "--staff",
                "ops-7",
            ]
        )
        == 1
    )
    assert json.loads(capsys.readouterr().err)["code"] == "currency_mismatch"
    assert main(["suspend", "--customer", alice["id"], "--reason", "fraud check", "--staff", "ops-7"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "suspended"
    assert main(["unsuspend", "--customer", alice["id"], "--reason", "cleared", "--staff", "ops-7"]) == 0
    assert main(["terminate", "--customer", alice["id"], "--reason", "abuse", "--staff", "ops-7"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["status"] == "terminated"

    assert client.get(f"/v1/payments/{payment['id']}", headers=ops_headers()).json()["refunded_amount"] == 500
    actions = [
        e["action"]
        for e in client.get(f"/v1/audit-events?customer_id={alice['id']}&actor=ops-7", headers=ops_headers()).json()[
            "data"
        ]
    ]
    assert {
        "refund.requested",
        "credit.granted",
        "customer.suspended",
        "customer.unsuspended",
        "customer.terminated",
    } <= set(actions)
