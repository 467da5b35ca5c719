"""Graceful shutdown (issue 15, item 7): `billing serve` (with its scheduler) and `billing scheduler`, sent SIGTERM
or SIGINT in the middle of a batch of renewal charges, claim nothing new, let the batch finish and be recorded
(B2: the subscriptions renewed, their payments succeeded, none left pending, no claim left), then close the gateway
and the database and exit 0 within the bound, saying in the log that they stopped gracefully. Past the bound
(BILLING_SHUTDOWN_GRACE_SECONDS) the process still exits in time, the log names what was cut off, and a later
run completes it with the same idempotency keys: every subscription renewed exactly once, nothing charged twice.

How the signal lands mid-batch: the process's sandbox gateway notes a batch's renewal charges once made and answers
them CHARGE_DELAY later (tests/reliability/_launch.py, a slow gateway, test-only); the test signals the process as
soon as charges are noted.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET, START, _empty
from tests.reliability.support import ROOT, Api, iso, parse, start_service

PLAN = {
    "code": "pro-monthly",
    "name": "Pro",
    "tier": "subscription",
    "interval": "month",
    "amount": 2000,
    "currency": "usd",
    "trial_available": False,
}
SUBSCRIBERS = 12
BATCH = 4  # renewals claimed at a time: the signal lands in the first batch(es), the others must not be claimed
CHARGE_DELAY = 4.0  # seconds between a renewal charge and its answer
GRACE = 30.0  # BILLING_SHUTDOWN_GRACE_SECONDS, the default
REQUESTS_GRACE = 20.0  # uvicorn's timeout_graceful_shutdown (app/cli.py), counted from the same signal
EXIT_BOUND = max(GRACE, REQUESTS_GRACE) + 10  # plus closing the gateway and the database, on a busy machine
LIVENESS_LEASE = _dt.timedelta(seconds=15)  # app/subscriptions/tasks.py


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return value


def log_lines(log_file: Path) -> list[dict]:
    entries = []
    for line in log_file.read_text(errors="replace").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def charged(charge_log: Path) -> set[str]:
    return set(charge_log.read_text().split())


def due_renewals(url: str) -> list[dict]:
    """SUBSCRIBERS customers, each with a subscription bought at START; the clock moved past their period end, so
    every one is due for renewal. Returns the customers."""
    with httpx.Client(base_url=url, timeout=60) as http:
        api = Api(http)
        api.ok("POST", "/v1/sandbox/clock", json={"now": START})
        api.ok("POST", "/v1/plans", 201, json=PLAN)
        customers, ends = [], []
        for i in range(SUBSCRIBERS):
            sub = f"sub{i}"
            customer = api.as_customer(sub).ok(
                "POST",
                "/v1/customers",
                201,
                json={"email": f"{sub}@example.com", "name": f"Name {sub}", "country": "US"},
            )
            bought = api.as_customer(sub).ok(
                "POST",
                "/v1/subscriptions",
                201,
                json={"customer_id": customer["id"], "plan": PLAN["code"], "payment_method": "pm_card_visa"},
            )
            customers.append(customer)
            ends.append(parse(bought["current_period_end"]))
        api.ok("POST", "/v1/sandbox/clock", json={"now": iso(max(ends) + _dt.timedelta(hours=1))})
    return customers


def payments_of(api: Api, customers: list[dict]) -> dict[str, list[dict]]:
    return {c["id"]: api.all(f"/v1/customers/{c['id']}/payments") for c in customers}


def renewed(api: Api) -> int:
    return len(api.all("/v1/audit-events", {"action": "subscription.renewed"}))


def stop_and_time(process: subprocess.Popen, sig: int, timeout: float) -> float:
    started = time.monotonic()
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"the process did not exit within {timeout} s of the signal") from None
    return time.monotonic() - started


def assert_batch_completed(url: str, customers: list[dict], made: set[str]) -> None:
    """B2: what was charged before the stop is recorded (renewed, payments succeeded), nothing is left pending, no
    claim is left (a cancellation is not refused with 409 `charge_in_progress`), nothing more was claimed."""
    with httpx.Client(base_url=url, timeout=60) as http:
        api = Api(http)
        assert 0 < len(made) < SUBSCRIBERS, len(made)  # stopped inside the renewals, before the last batch
        assert renewed(api) == len(made)
        payments = payments_of(api, customers)
        pending = [p["id"] for ps in payments.values() for p in ps if p["status"] != "succeeded"]
        assert not pending, pending
        # Each customer: the purchase, and the renewal if it was charged; the batches not started were not claimed.
        assert sorted(len(ps) for ps in payments.values()) == sorted([2] * len(made) + [1] * (SUBSCRIBERS - len(made)))
        for customer in customers:
            [subscription] = api.all(f"/v1/customers/{customer['id']}/subscriptions")
            response = api.as_customer(customer["external_id"]).post(f"/v1/subscriptions/{subscription['id']}/cancel")
            assert response.status_code == 200, response.text


def assert_stopped_gracefully(log_file: Path) -> None:
    messages = [entry["msg"] for entry in log_lines(log_file)]
    assert any(m.startswith("scheduler stopped gracefully") for m in messages), messages[-20:]
    assert not any("cutting off" in m for m in messages), messages[-20:]
    assert not [e for e in log_lines(log_file) if e.get("level") == "error"], messages[-20:]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_B2_billing_serve_stopped_mid_batch_finishes_the_batch_and_exits_0(
    database_url: str, tmp_path: Path, sig: int
) -> None:
    """B2: `billing serve` with its scheduler, stopped while a batch of renewals waits for the gateway, finishes
    and records that batch (renewed, paid, no claim left), claims no other, and exits 0 within the bound."""
    asyncio.run(_empty(database_url))
    charge_log, log_file = tmp_path / "charges.log", tmp_path / "serve.log"
    charge_log.touch()
    replica = start_service(
        database_url,
        charge_delay=CHARGE_DELAY,
        charge_log=charge_log,
        log_file=log_file,
        BILLING_SCHEDULER_ENABLED="true",
        BILLING_SCHEDULER_INTERVAL_SECONDS="0.5",
        BILLING_JOB_BATCH_SIZE=str(BATCH),
        BILLING_LOG_LEVEL="INFO",
        BILLING_LOG_FORMAT="json",
    )
    checker = None
    try:
        customers = due_renewals(replica.url)
        wait_for(lambda: charged(charge_log), 60, "a batch of renewal charges")
        took = stop_and_time(replica.process, sig, EXIT_BOUND)
        checker = start_service(database_url)
        assert_batch_completed(checker.url, customers, charged(charge_log))
        assert replica.process.returncode == 0, (replica.process.returncode, log_file.read_text()[-3000:])
        assert took < EXIT_BOUND, took
        assert_stopped_gracefully(log_file)
    finally:
        replica.stop(kill=True)
        if checker is not None:
            checker.stop(kill=True)


def start_scheduler(
    database_url: str, charge_log: Path, log_file: Path, delay: float = CHARGE_DELAY
) -> subprocess.Popen:
    """`billing scheduler` with the slow sandbox gateway (tests/reliability/_launch.py)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    environment.update(
        BILLING_DATABASE_URL=database_url,
        BILLING_AUTH_SECRET=SECRET,
        BILLING_SANDBOX="true",
        BILLING_DEMO_PLANS="false",
        BILLING_LOG_LEVEL="INFO",
        BILLING_LOG_FORMAT="json",
        BILLING_SCHEDULER_INTERVAL_SECONDS="0.5",
        BILLING_JOB_BATCH_SIZE=str(BATCH),
        RELIABILITY_CHARGE_DELAY_SECONDS=str(delay),
        RELIABILITY_CHARGE_LOG=str(charge_log),
    )
    with open(log_file, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.reliability._launch", "scheduler"],
            env=environment,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def test_B2_billing_scheduler_stopped_mid_batch_finishes_the_batch_and_exits_0(
    database_url: str, tmp_path: Path
) -> None:
    """B2: `billing scheduler`, sent SIGTERM while a batch of renewals waits for the gateway, finishes and records
    that batch, claims no other, closes the gateway and the database, and exits 0 within the bound."""
    asyncio.run(_empty(database_url))
    charge_log, log_file = tmp_path / "charges.log", tmp_path / "scheduler.log"
    charge_log.touch()
    api_replica = start_service(database_url)
    scheduler = None
    try:
        customers = due_renewals(api_replica.url)
        scheduler = start_scheduler(database_url, charge_log, log_file)
        wait_for(lambda: charged(charge_log) or scheduler.poll() is not None, 60, "a batch of renewal charges")
        assert scheduler.poll() is None, log_file.read_text()[-3000:]
        took = stop_and_time(scheduler, signal.SIGTERM, GRACE + 10)
        assert_batch_completed(api_replica.url, customers, charged(charge_log))
        assert scheduler.returncode == 0, (scheduler.returncode, log_file.read_text()[-3000:])
        assert took < GRACE + 10, took
        assert_stopped_gracefully(log_file)
    finally:
        if scheduler is not None and scheduler.poll() is None:
            scheduler.kill()
            scheduler.wait()
        api_replica.stop(kill=True)


def test_B2_past_the_grace_period_the_process_exits_and_a_later_run_completes_the_cut_off_batch_once(
    database_url: str, tmp_path: Path
) -> None:
    """B2: a batch that outlasts BILLING_SHUTDOWN_GRACE_SECONDS is cut off: the process still exits 0 in time,
    the log names the cut-off charges, and once their claims have run out a later run completes them with the
    same idempotency keys: every subscription renewed exactly once, one renewal payment each, none pending."""
    asyncio.run(_empty(database_url))
    charge_log, log_file = tmp_path / "charges.log", tmp_path / "serve.log"
    charge_log.touch()
    grace, delay = 1.0, 10.0  # the answer to the charges comes long after the grace period
    replica = start_service(
        database_url,
        charge_delay=delay,
        charge_log=charge_log,
        log_file=log_file,
        BILLING_SCHEDULER_ENABLED="true",
        BILLING_SCHEDULER_INTERVAL_SECONDS="0.5",
        BILLING_JOB_BATCH_SIZE=str(BATCH),
        BILLING_LOG_LEVEL="INFO",
        BILLING_LOG_FORMAT="json",
        BILLING_SHUTDOWN_GRACE_SECONDS=str(grace),
    )
    later = None
    try:
        customers = due_renewals(replica.url)
        wait_for(lambda: charged(charge_log), 60, "a batch of renewal charges")
        took = stop_and_time(replica.process, signal.SIGTERM, delay)
        assert replica.process.returncode == 0, (replica.process.returncode, log_file.read_text()[-3000:])
        assert took < grace + 6, took  # the grace period and closing, not the charges' answer
        messages = [entry["msg"] for entry in log_lines(log_file)]
        cut = [m for m in messages if "cutting off" in m]
        assert cut and "renewal charges of" in cut[0], messages[-20:]
        made = charged(charge_log)
        # A later run, once the cut-off claims have run out (the real clock moved past the liveness lease).
        later = start_service(database_url, wall_offset=LIVENESS_LEASE * 2)
        with httpx.Client(base_url=later.url, timeout=120) as http:
            api = Api(http)
            for _ in range(20):
                api.ok("POST", "/v1/sandbox/run-due")
                if renewed(api) >= SUBSCRIBERS:
                    break
            assert renewed(api) == SUBSCRIBERS
            payments = payments_of(api, customers)
            assert all(len(ps) == 2 and {p["status"] for p in ps} == {"succeeded"} for ps in payments.values()), (
                payments
            )
            # The cut-off charges were answered with the first result of their keys: no second payment, each
            # subscription renewed once (one renewal payment per customer, above).
            assert made, made
    finally:
        replica.stop(kill=True)
        if later is not None:
            later.stop(kill=True)


def test_B2_a_second_signal_ends_the_grace_period_at_once(database_url: str, tmp_path: Path) -> None:
    """B2: `billing scheduler` sent SIGTERM, then SIGINT (Ctrl-C twice), stops at once, long before its grace
    period or the batch's charges end; the log names the cut-off charges, which a later run completes (above)."""
    asyncio.run(_empty(database_url))
    charge_log, log_file = tmp_path / "charges.log", tmp_path / "scheduler.log"
    charge_log.touch()
    api_replica = start_service(database_url)
    scheduler = None
    try:
        due_renewals(api_replica.url)
        scheduler = start_scheduler(database_url, charge_log, log_file, delay=GRACE + 10)
        wait_for(lambda: charged(charge_log) or scheduler.poll() is not None, 60, "a batch of renewal charges")
        assert scheduler.poll() is None, log_file.read_text()[-3000:]
        scheduler.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        took = stop_and_time(scheduler, signal.SIGINT, GRACE)
        assert scheduler.returncode == 0, (scheduler.returncode, log_file.read_text()[-3000:])
        assert took < 5, took
        messages = [entry["msg"] for entry in log_lines(log_file)]
        cut = [m for m in messages if "cutting off" in m]
        assert cut and "renewal charges of" in cut[0], messages[-20:]
    finally:
        if scheduler is not None and scheduler.poll() is None:
            scheduler.kill()
            scheduler.wait()
        api_replica.stop(kill=True)
