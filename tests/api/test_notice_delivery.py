"""Notices delivered through a real local SMTP server (T3, T4): Message-ID from the notice id, retried after a
failure without duplicates."""

from __future__ import annotations

import datetime as _dt

import pytest
from fastapi.testclient import TestClient

from app.clock import SystemClock
from tests.api.test_trials import iso, notices, parse, start_trial
from tests.conftest import START, make_customer, make_plan, make_settings, move_clock, run_due
from tests.support.servers import SmtpServer


class ManualWall(SystemClock):
    """Real time plus an offset the test moves, for delivery back-off (infrastructure time)."""

    def __init__(self) -> None:
        self.offset = _dt.timedelta()

    def wall(self) -> _dt.datetime:
        return SystemClock.wall() + self.offset


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


def _client(settings, wall=None):  # noqa: ANN001
    from app.main import create_app

    client = TestClient(create_app(settings, system_clock=wall), raise_server_exceptions=False)
    client.__enter__()
    move_clock(client, START)
    return client


def test_T4_notice_is_mailed_once_with_a_stable_message_id(clean_db, smtp):
    client = _client(make_settings(clean_db, smtp_url=smtp.url, smtp_from="billing@test.example"))
    try:
        make_plan(client)
        alice = make_customer(client, "alice", email="Alice@Example.com")
        trial = start_trial(client, alice).json()
        move_clock(client, trial["notice_at"])
        assert run_due(client)["deliver_notices"] == 1
        assert run_due(client)["deliver_notices"] == 0
        [(recipients, message)] = smtp.inbox.messages
        [notice] = notices(client, alice)
        assert recipients == ["Alice@Example.com"]
        assert message["Message-ID"] == f"<{notice['id']}@billing.notices>"
        assert message["From"] == "billing@test.example"
        assert message["Subject"] == notice["subject"]
        assert "Payment is due in 7 days" in message.get_content()
        assert notice["status"] == "sent" and notice["sent_at"] == trial["notice_at"]
    finally:
        client.__exit__(None, None, None)


def test_T3_failed_delivery_is_retried_later_without_duplicates(clean_db):
    down = SmtpServer()  # nothing listens on its port yet
    wall = ManualWall()
    client = _client(make_settings(clean_db, smtp_url=down.url), wall)
    try:
        make_plan(client)
        alice = make_customer(client, "alice")
        trial = start_trial(client, alice).json()
        move_clock(client, iso(parse(trial["ends_at"])))
        jobs = run_due(client)
        assert jobs["trial_expiry"] == 1 and jobs["deliver_notices"] == 2  # two attempts, both failed
        assert {n["status"] for n in notices(client, alice)} == {"pending"}
        assert run_due(client)["deliver_notices"] == 0  # backing off: nothing is retried at once
        down.start()
        try:
            wall.offset = _dt.timedelta(minutes=5)
            assert run_due(client)["deliver_notices"] == 2
            assert run_due(client)["deliver_notices"] == 0
            assert sorted(m["Subject"] for _, m in down.inbox.messages) == sorted(
                n["subject"] for n in notices(client, alice))
            assert len(down.inbox.messages) == 2
            assert {n["status"] for n in notices(client, alice)} == {"sent"}
        finally:
            down.stop()
    finally:
        client.__exit__(None, None, None)
