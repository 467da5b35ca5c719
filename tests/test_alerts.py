"""The alerts (deploy/prometheus/alerts.yml) are valid, fire on the series they are written for (promtool's own unit
tests, alerts_test.yml), and name only metrics the service exposes; the backlog gauges they read follow the
database: due work shows up when the clock passes it and goes away when a run does it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import START, make_customer, make_plan, make_settings, move_clock, ops_headers, run_due

RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")


def _promtool(*argv: str) -> None:
    if PROMTOOL is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (Debian's prometheus package; tests/system-packages.sh installs it)")
        pytest.skip("promtool is not installed (Debian's prometheus package)")
    result = subprocess.run([PROMTOOL, *argv], cwd=RULES, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_rules_are_valid() -> None:
    _promtool("check", "rules", "alerts.yml")


def test_each_alert_fires_on_its_series_and_a_healthy_service_raises_none() -> None:
    _promtool("test", "rules", "alerts_test.yml")


@pytest.fixture
def client(clean_db: str):
    from app.main import create_app

    with TestClient(create_app(make_settings(clean_db, backlog_refresh_seconds=0)), raise_server_exceptions=False) as c:
        move_clock(c, START)
        yield c


def scrape(client) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_every_metric_an_alert_reads_is_exposed(client) -> None:
    exposed = {re.sub(r"\{.*", "", name) for name in scrape(client)}
    exposed |= {name.removesuffix("_total") for name in exposed}  # a counter's family name
    rules = (RULES / "alerts.yml").read_text()
    named = set(re.findall(r"\b(billing_[a-z0-9_]+)", rules))
    assert named, "the rules name no billing metric"
    assert named <= exposed, f"alerts read metrics the service does not expose: {sorted(named - exposed)}"


def test_due_renewals_show_as_waiting_work_until_a_run_does_them(client) -> None:
    make_plan(client, "basic", amount=1000)
    customer = make_customer(client, "backlog-1")
    bought = client.post(
        "/v1/subscriptions",
        json={"customer_id": customer["id"], "plan": "basic", "payment_method": "pm_card_visa"},
        headers=ops_headers(),
    )
    assert bought.status_code == 201, bought.text
    assert scrape(client)['billing_due_work{job="renewals"}'] == 0
    assert bought.json()["current_period_end"] == "2030-02-15T12:00:00Z"
    move_clock(client, "2030-02-15T12:10:00Z")  # ten minutes past the period end
    samples = scrape(client)
    assert samples['billing_due_work{job="renewals"}'] == 1
    assert samples['billing_due_work_oldest_seconds{job="renewals"}'] >= 600
    run_due(client)
    samples = scrape(client)
    assert samples['billing_due_work{job="renewals"}'] == 0
    assert samples['billing_due_work_oldest_seconds{job="renewals"}'] == 0


def test_a_suspended_customers_held_renewal_is_not_late_work(client) -> None:
    """R3: a renewal that falls due while the customer is suspended waits; it must not page anyone."""
    make_plan(client, "basic", amount=1000)
    customer = make_customer(client, "backlog-2")
    bought = client.post(
        "/v1/subscriptions",
        json={"customer_id": customer["id"], "plan": "basic", "payment_method": "pm_card_visa"},
        headers=ops_headers(),
    )
    assert bought.status_code == 201, bought.text
    suspended = client.post(
        f"/v1/customers/{customer['id']}/suspend", json={"reason": "fraud review"}, headers=ops_headers()
    )
    assert suspended.status_code == 200, suspended.text
    move_clock(client, "2030-02-15T12:10:00Z")
    assert scrape(client)['billing_due_work{job="renewals"}'] == 0


def test_metrics_are_served_while_the_database_is_unreachable(tmp_path) -> None:
    """The backlog is read from the database; without one, /metrics still answers with the process's own."""
    from app.main import create_app

    gone = make_settings(f"sqlite:///{tmp_path / 'missing' / 'nowhere.db'}", backlog_refresh_seconds=0)
    with TestClient(create_app(gone), raise_server_exceptions=False) as c:
        response = c.get("/metrics")
    assert response.status_code == 200 and "billing_http_requests_total" in response.text
