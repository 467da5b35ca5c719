"""Issue 15 item 6: the database round trips of a keyed cancel and resume (the benchmark's `api_write_ratio`
requests), counted on the engines: every statement the driver sends, and on PostgreSQL the BEGIN and COMMIT that
asyncpg sends as statements of their own (SQLite's BEGIN IMMEDIATE is a statement already, its COMMIT is counted
too). The sandbox clock's read (`SELECT ... FROM sandbox_clock`), which the tests' sandbox adds and production does
not make (nor the benchmark), is left out. The counts are a budget: a change that adds a round trip to the hot
write path fails here. Before the key moved to the end of the unit and the change's rows into one statement:
9 (cancel) and 8 (resume) on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from tests.api.test_subscriptions import buy
from tests.conftest import customer_headers, make_customer, make_plan

# PostgreSQL: BEGIN; the locked read; the update; the notice, audit row and domain event in one statement (cancel;
# resume: the audit row and the event); the key with its stored response; COMMIT.
POSTGRES_BUDGET = {"cancel": 6, "resume": 6}
# SQLite: BEGIN IMMEDIATE; the read; the update; notice, audit row and event one statement each (SQLite has no
# data-modifying CTE); the key with its response; COMMIT.
SQLITE_BUDGET = {"cancel": 8, "resume": 7}


@contextmanager
def round_trips(client) -> Iterator[list[str]]:
    ctx = client.app.state.ctx
    sent: list[str] = []
    postgres = ctx.db.is_postgres

    def statement(_conn, _cursor, text, *_args) -> None:
        if "sandbox_clock" not in text:
            sent.append(" ".join(text.split()[:3]))

    def begin(_conn) -> None:
        if postgres:
            sent.append("BEGIN")

    def commit(_conn) -> None:
        sent.append("COMMIT")

    listeners = [("before_cursor_execute", statement), ("begin", begin), ("commit", commit)]
    engines = (ctx.db.engine.sync_engine, ctx.db.autocommit_engine.sync_engine)
    for engine in engines:
        for name, fn in listeners:
            event.listen(engine, name, fn)
    try:
        yield sent
    finally:
        for engine in engines:
            for name, fn in listeners:
                event.remove(engine, name, fn)


def _keyed(client, sub_id: str, action: str, key: str):
    response = client.post(
        f"/v1/subscriptions/{sub_id}/{action}", headers={**customer_headers("alice"), "Idempotency-Key": key}
    )
    assert response.status_code == 200, response.text
    return response


def test_a_keyed_cancel_and_resume_stay_within_their_round_trip_budget(client) -> None:
    make_plan(client, "pro-monthly")
    alice = make_customer(client, "alice")
    sub = buy(client, alice)
    for n in range(2):  # warm: connections opened, statements prepared
        _keyed(client, sub["id"], "cancel", f"warm-cancel-{n}")
        _keyed(client, sub["id"], "resume", f"warm-resume-{n}")
    budget = POSTGRES_BUDGET if client.app.state.ctx.db.is_postgres else SQLITE_BUDGET
    counts = {}
    for action in ("cancel", "resume"):
        with round_trips(client) as sent:
            _keyed(client, sub["id"], action, f"counted-{action}")
        # The plan-change hooks' reads (C3/C4: a cancellation withdraws a pending change, app/plan_changes) are
        # their own budget: at most 2 (today 2 on a cancel, none on a resume).
        hooks = [text for text in sent if "plan_changes" in text]
        assert len(hooks) <= 2, hooks
        counts[action] = len(sent) - len(hooks)
        print(action, len(sent), sent)
    assert counts["cancel"] <= budget["cancel"], counts
    assert counts["resume"] <= budget["resume"], counts
    again = _keyed(client, sub["id"], "resume", "counted-resume")
    assert again.headers["idempotent-replayed"] == "true"
