"""`billing demo` plays a customer's life against a running sandbox service (a real `billing serve`) and prints a
timeline in which each notice of the policy appears, in order, at its moment (T1-T4, B1-B3, C1, R1)."""

from __future__ import annotations

import re

import httpx
import pytest

from app.cli import main
from tests.conftest import SECRET, START, ops_headers
from tests.support.servers import start_replica


@pytest.fixture
def service(clean_db: str, monkeypatch: pytest.MonkeyPatch):
    replica = start_replica(clean_db, BILLING_DEMO_PLANS="true")
    monkeypatch.setenv("BILLING_AUTH_SECRET", SECRET)
    monkeypatch.setenv("BILLING_DATABASE_URL", clean_db)
    try:
        assert httpx.post(f"{replica.url}/v1/sandbox/clock", json={"now": START}, headers=ops_headers()).is_success
        yield replica.url
    finally:
        replica.stop()


def test_the_demo_prints_a_customer_life_with_each_notice_at_its_moment(service: str, capsys) -> None:
    assert main(["demo", "--url", service]) == 0
    lines = capsys.readouterr().out.splitlines()
    story = "\n".join(lines)
    expected = [
        r"2030-01-15 12:00  \[T1 T2\] .* free trial .* ends 2030-02-14 12:00, and the reminder is due 2030-02-07 12:00",
        r"2030-02-07 12:00  \[T4\] .* notice trial_expiring",
        r"2030-02-14 12:00  \[T3\] .* notice trial_expired",
        r"2030-02-14 12:00  \[B1 B3\] .* buys .* active until 2030-03-14 12:00",
        r"2030-02-14 12:00  \[B1\] .* notice receipt",
        r"2030-03-14 12:00  \[B2 B3 B4\] .* renewed at the locked price .* next period ends 2030-04-14 12:00",
        r"2030-03-14 12:00  \[C1 R1\] .* cancels: access continues until 2030-04-14 12:00; nothing is refunded",
        r"\[C1\] .* notice cancellation_scheduled",
        r"2030-04-14 12:00  \[C1\] .* the subscription has ended \(canceled\)",
        r"\[C1\] .* notice subscription_ended",
        r"\[C1\] .* access now: no",
        r"\[R1\] .* paid in all: .* in 2 payments, refunded: nothing",
    ]
    position = 0
    for pattern in expected:
        found = next((i for i, line in enumerate(lines[position:], position) if re.search(pattern, line)), None)
        assert found is not None, f"{pattern!r} not found (in order) in:\n{story}"
        position = found + 1


def test_the_demo_refuses_a_service_that_is_not_a_sandbox_or_not_there(capsys) -> None:
    assert main(["demo", "--url", "http://127.0.0.1:9"]) == 1
    assert "cannot reach the service" in capsys.readouterr().err
