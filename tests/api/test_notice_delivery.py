"""Notices delivered through a real local SMTP server (T3, T4): Message-ID from the notice id, retried after a
failure without duplicates."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt

import pytest
from fastapi.testclient import TestClient

from tests.api.test_trials import iso, notices, parse, start_trial
from tests.conftest import (
    START,
    ManualWall,
    make_customer,
    make_plan,
    make_settings,
    move_clock,
    ops_headers,
    run_due,
)
from tests.support.servers import Inbox, SmtpServer


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


def _client(settings, wall=None):
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
        move_clock(client, trial["notice_at"])
        assert run_due(client)["deliver_notices"] == 1  # the expiring notice (T4): one attempt, failed
        move_clock(client, iso(parse(trial["ends_at"])))
        jobs = run_due(client)
        # The expired notice: one attempt, failed; the expiring one is backing off (the wall clock has not moved).
        assert jobs["trial_expiry"] == 1 and jobs["deliver_notices"] == 1
        assert {n["status"] for n in notices(client, alice)} == {"pending"}
        assert run_due(client)["deliver_notices"] == 0  # backing off: nothing is retried at once
        down.start()
        try:
            wall.offset = _dt.timedelta(minutes=5)
            assert run_due(client)["deliver_notices"] == 2
            assert run_due(client)["deliver_notices"] == 0
            assert sorted(m["Subject"] for _, m in down.inbox.messages) == sorted(
                n["subject"] for n in notices(client, alice)
            )
            assert len(down.inbox.messages) == 2
            assert {n["status"] for n in notices(client, alice)} == {"sent"}
        finally:
            down.stop()
    finally:
        client.__exit__(None, None, None)


def send_messages(client, customer: dict, count: int) -> list[dict]:
    for k in range(count):
        response = client.post(
            f"/v1/customers/{customer['id']}/messages",
            headers=ops_headers(),
            json={"category": "service", "subject": f"Message {k}", "body": f"Body {k}"},
        )
        assert response.status_code == 201, response.text
    return notices(client, customer)


def test_a_batch_of_notices_goes_over_one_smtp_connection(clean_db, smtp):
    client = _client(make_settings(clean_db, smtp_url=smtp.url))
    try:
        alice = make_customer(client, "alice")
        sent = send_messages(client, alice, 5)
        assert run_due(client)["deliver_notices"] == 5
        assert sorted(m["Message-ID"] for _, m in smtp.inbox.messages) == sorted(
            f"<{n['id']}@billing.notices>" for n in sent
        )
        assert len(set(smtp.inbox.peers)) == 1  # one connection (one EHLO, one login) for the batch
        assert {n["status"] for n in notices(client, alice)} == {"sent"}
    finally:
        client.__exit__(None, None, None)


class HangsUpAfterEach(Inbox):
    """Accepts each message, then closes the connection (as a server with a one-message limit, or an idle timeout)."""

    async def handle_DATA(self, server, session, envelope):
        reply = await super().handle_DATA(server, session, envelope)
        asyncio.get_running_loop().call_later(0.05, server.transport.close)
        return reply


async def test_a_session_reconnects_when_the_server_has_closed_the_connection() -> None:
    from app.notices.mailer import SmtpMailer

    smtp = SmtpServer()
    smtp.inbox = HangsUpAfterEach()
    smtp.start()
    try:
        async with SmtpMailer(smtp.url, "billing@test.example").session() as send:
            for k in range(3):
                await send(f"ntc_{k}", "alice@example.com", f"Message {k}", "Body")
                await asyncio.sleep(0.3)  # the server hangs up meanwhile
    finally:
        smtp.stop()
    assert [m["Message-ID"] for _, m in smtp.inbox.messages] == [f"<ntc_{k}@billing.notices>" for k in range(3)]
    assert len(set(smtp.inbox.peers)) == 3  # a new connection for each message after a hang-up, none lost


class RefusesOnce(Inbox):
    """Refuses the `refuse`-th message it is offered (451, try again later), once; accepts the others."""

    refuse = 2

    def __init__(self) -> None:
        super().__init__()
        self.offered = 0

    async def handle_DATA(self, server, session, envelope):
        self.offered += 1
        if self.offered == self.refuse:
            return "451 try again later"
        return await super().handle_DATA(server, session, envelope)


def test_T3_a_refused_message_is_retried_later_and_the_rest_of_the_batch_goes_out(clean_db):
    smtp = SmtpServer()
    smtp.inbox = RefusesOnce()
    smtp.start()
    wall = ManualWall()
    client = _client(make_settings(clean_db, smtp_url=smtp.url), wall)
    try:
        alice = make_customer(client, "alice")
        sent = send_messages(client, alice, 4)
        assert run_due(client)["deliver_notices"] == 4
        statuses = sorted(n["status"] for n in notices(client, alice))
        assert statuses == ["pending", "sent", "sent", "sent"]  # the refused one waits for its back-off
        # After the refusal the connection was closed; the next message opened a new one.
        assert len(smtp.inbox.messages) == 3 and len(set(smtp.inbox.peers)) == 2
        wall.offset = _dt.timedelta(minutes=5)
        assert run_due(client)["deliver_notices"] == 1
        assert sorted(m["Message-ID"] for _, m in smtp.inbox.messages) == sorted(
            f"<{n['id']}@billing.notices>" for n in sent
        )  # each once
        assert {n["status"] for n in notices(client, alice)} == {"sent"}
    finally:
        client.__exit__(None, None, None)
        smtp.stop()


class SlowMailer:
    """Each message takes 100 s of real time (the wall moves on: more than the 30 s a message may still need when it
    starts, less than a lease); records, per send, the notice's lease in the database and when the send started."""

    delivered_status = "sent"
    takes = _dt.timedelta(seconds=100)

    def __init__(self, wall: ManualWall) -> None:
        self.wall = wall
        self.db = None
        self.sends: list[tuple[str, _dt.datetime, _dt.datetime]] = []

    @contextlib.asynccontextmanager
    async def session(self):
        yield self.send

    async def send(self, notice_id: str, to: str, subject: str, body: str) -> None:
        from sqlalchemy import select

        from app.models import notices as notices_table

        async with self.db.read() as conn:
            lease = (
                await conn.execute(select(notices_table.c.lease_until).where(notices_table.c.id == notice_id))
            ).scalar_one()
        self.sends.append((notice_id, lease, self.wall.wall()))
        self.wall.offset += self.takes


def test_a_slow_smtp_server_never_has_a_message_outlive_its_lease(clean_db):
    """Each message starts with enough of its lease left to finish (the lease is extended first when needed), so no
    other replica can claim a notice while this one is sending it; every notice is sent once."""
    from app.main import create_app

    wall = ManualWall()
    mailer = SlowMailer(wall)
    app = create_app(make_settings(clean_db), system_clock=wall, mailer=mailer)
    mailer.db = app.state.ctx.db
    with TestClient(app, raise_server_exceptions=False) as client:
        move_clock(client, START)
        make_plan(client)
        alice, bob = make_customer(client, "alice"), make_customer(client, "bob")
        trial = start_trial(client, alice).json()
        start_trial(client, bob)
        # Past the end: each trial gets its expired notice (T4: no expiring one once the trial has ended).
        move_clock(client, iso(parse(trial["ends_at"])))
        jobs = run_due(client)
        expected = {n["id"] for n in notices(client, alice) + notices(client, bob)}
        assert len(expected) == 2 and jobs["deliver_notices"] == 2
        assert sorted(notice_id for notice_id, _, _ in mailer.sends) == sorted(expected)  # each sent once
        for notice_id, lease, started in mailer.sends:
            assert lease is not None and started + mailer.takes <= parse(iso(lease)), (notice_id, lease, started)
        assert {n["status"] for n in notices(client, alice) + notices(client, bob)} == {"sent"}
