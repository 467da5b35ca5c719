"""The database's connection lanes (app/db.py): connections stay open between uses, are handed out first come first
served, and a connection in an unknown state is closed and replaced instead of reused. And the database's faults
(issue 14 item 14): a dead connection is replaced, a read meeting one is retried once, what cannot reach the
database is answered 503 `database_unavailable` (app/availability.py), and a COMMIT whose answer was lost is told
apart from one that failed."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.availability import DatabaseFaultMiddleware
from app.db import CommitOutcomeUnknown, Database
from tests.support.cutting_proxy import CuttingProxy
from tests.support.servers import free_port


async def _backend(conn):
    """Which server connection this is: PostgreSQL's backend pid, or SQLite's driver connection itself (an object,
    not its id(), which a later object could reuse once this one is gone)."""
    if conn.dialect.name == "postgresql":
        return (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    return (await conn.get_raw_connection()).driver_connection


async def test_a_connection_stays_open_between_uses(database_url: str) -> None:
    db = Database(database_url, pool_size=2)
    try:
        async with db.read() as conn:
            first = await _backend(conn)
        async with db.read() as conn:
            assert await _backend(conn) == first
        async with db.transaction() as conn:
            in_transaction = await _backend(conn)
        async with db.transaction() as conn:
            assert await _backend(conn) == in_transaction
    finally:
        await db.dispose()


async def test_waiting_uses_are_served_in_arrival_order_and_a_newcomer_queues_behind_them(database_url: str) -> None:
    db = Database(database_url, pool_size=1)
    served: list[str] = []
    release = asyncio.Event()

    async def hold() -> None:
        async with db.transaction() as conn:
            await conn.execute(text("SELECT 1"))
            await release.wait()

    async def use(name: str) -> None:
        async with db.transaction() as conn:
            served.append(name)
            await conn.execute(text("SELECT 1"))

    try:
        holder = asyncio.create_task(hold())
        await asyncio.sleep(0.05)
        waiting = [asyncio.create_task(use(f"waiter-{n}")) for n in range(3)]
        await asyncio.sleep(0.05)
        release.set()
        await holder
        # The connection was handed to waiter-0 as the holder gave it back; one arriving now waits its turn.
        await asyncio.gather(*waiting, use("newcomer"))
        assert served == ["waiter-0", "waiter-1", "waiter-2", "newcomer"]
    finally:
        await db.dispose()


async def test_a_use_that_waits_too_long_fails_clearly_and_frees_its_place(database_url: str) -> None:
    db = Database(database_url, pool_size=1, pool_timeout=0.2)
    release = asyncio.Event()

    async def hold() -> None:
        async with db.transaction() as conn:
            await conn.execute(text("SELECT 1"))
            await release.wait()

    try:
        holder = asyncio.create_task(hold())
        await asyncio.sleep(0.05)
        with pytest.raises(PoolTimeout, match=r"no database connection free within 0\.2 s"):
            async with db.transaction():
                pass
        release.set()
        await holder
        async with db.transaction() as conn:  # the connection went back to the lane, not to the timed-out use
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await db.dispose()


async def test_an_application_error_in_a_use_keeps_its_connection(database_url: str) -> None:
    db = Database(database_url, pool_size=2)
    try:
        async with db.read() as conn:
            reader = await _backend(conn)
        async with db.transaction() as conn:
            writer = await _backend(conn)
        with pytest.raises(ValueError):
            async with db.read():
                raise ValueError("a refusal of the service's own, not the database's")
        with pytest.raises(ValueError):
            async with db.transaction() as conn:
                await conn.execute(text("SELECT 1"))
                raise ValueError("a refusal of the service's own, not the database's")
        async with db.read() as conn:
            assert await _backend(conn) == reader
        async with db.transaction() as conn:  # rolled back, and kept
            assert await _backend(conn) == writer
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await db.dispose()


async def test_a_database_error_retires_the_connection_and_the_next_use_gets_a_new_one(database_url: str) -> None:
    db = Database(database_url, pool_size=2)
    try:
        for use in (db.read, db.transaction):
            async with use() as conn:
                before = await _backend(conn)
            with pytest.raises(DBAPIError):
                async with use() as conn:
                    await conn.execute(text("SELECT * FROM no_such_table"))
            async with use() as conn:
                assert await _backend(conn) != before
                assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await db.dispose()


async def test_a_failed_commit_leaves_no_transaction_open_and_no_lock_held(database_url: str) -> None:
    """A COMMIT refused by a deferred constraint: on SQLite the transaction (and its write lock) stays open on
    that connection unless it is closed; the next uses, of this database and of another, must not notice."""
    db = Database(database_url, pool_size=1)
    other = Database(database_url, pool_size=1)
    try:
        with pytest.raises(DBAPIError):
            async with db.transaction() as conn:
                await conn.execute(text("CREATE TEMP TABLE lane_parent (id INTEGER PRIMARY KEY)"))
                await conn.execute(
                    text(
                        "CREATE TEMP TABLE lane_child (parent INTEGER REFERENCES lane_parent (id) "
                        "DEFERRABLE INITIALLY DEFERRED)"
                    )
                )
                await conn.execute(text("INSERT INTO lane_child (parent) VALUES (1)"))
        async with asyncio.timeout(10):
            async with db.transaction() as conn:
                await conn.execute(text("SELECT 1"))
            async with other.transaction() as conn:  # takes the write lock on SQLite
                await conn.execute(text("SELECT 1"))
    finally:
        await db.dispose()
        await other.dispose()


async def test_a_connection_in_use_when_the_database_is_disposed_is_closed_when_handed_back(database_url: str) -> None:
    db = Database(database_url, pool_size=1)
    release = asyncio.Event()
    held: list = []

    async def hold() -> None:
        async with db.transaction() as conn:
            held.append(await _backend(conn))
            await release.wait()

    try:
        holder = asyncio.create_task(hold())
        await asyncio.sleep(0.05)
        await db.dispose()  # shutting down while a use holds the lane's only connection
        release.set()
        await holder
        async with db.transaction() as conn:  # a new connection; the old one was not put back
            assert await _backend(conn) != held[0]
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_a_use_cancelled_mid_statement_closes_its_connection_and_the_next_use_gets_a_new_one(
    database_url: str, is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("cancelling a running statement is proven on PostgreSQL")
    db = Database(database_url, pool_size=1)
    try:
        async with db.read() as conn:
            before = await _backend(conn)

        async def slow() -> None:
            async with db.read() as conn:
                await conn.execute(text("SELECT pg_sleep(5)"))

        task = asyncio.create_task(slow())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(5):
            async with db.read() as conn:
                assert await _backend(conn) != before
                assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_when_the_server_drops_its_connections_no_use_fails_and_each_gets_a_new_one(
    database_url: str, is_postgres: bool
) -> None:
    """Issue 14 item 14: a connection the server ended while it sat idle in its lane (a failover, a restart,
    `pg_terminate_backend`) is found dead when taken, from what the driver already knows (no round trip), and
    replaced: the use never sees it."""
    if not is_postgres:
        pytest.skip("terminating server connections is proven on PostgreSQL")
    db = Database(database_url, pool_size=2)
    other = Database(database_url, pool_size=1)
    opened: list[int] = []
    both_open = asyncio.Barrier(2)

    async def use() -> None:
        async with db.transaction() as conn:
            opened.append(await _backend(conn))
            await both_open.wait()  # two connections open at once, both idle afterwards

    try:
        await asyncio.gather(use(), use())
        async with db.read() as conn:
            reader = await _backend(conn)
        async with other.read() as admin:  # as a server restart would
            for pid in [*opened, reader]:
                await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await admin.execute(text("SELECT pg_sleep(0.2)"))  # the ended connections' sockets close meanwhile
        async with db.read() as conn:
            assert await _backend(conn) != reader
        dropped = list(opened)
        opened.clear()
        await asyncio.gather(use(), use())
        assert len(opened) == 2 and not set(opened) & set(dropped)
    finally:
        await db.dispose()
        await other.dispose()


async def _call(app, method: str) -> tuple[int, dict, bytes]:
    """One request through an ASGI app; its status, headers and body."""
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.request(method, "/")
    return response.status_code, dict(response.headers), response.content


def _app_ending_its_first_connection(db: Database, attempts: list[int]):
    """An ASGI app whose first run loses its connection mid-statement (the server ends it, as a failover does);
    later runs answer with the server connection they were served by."""

    async def app(scope, receive, send) -> None:
        attempts.append(len(attempts) + 1)
        async with db.read() as conn:
            if len(attempts) == 1:
                await conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            pid = await _backend(conn)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(pid).encode()})

    return app


@pytest.mark.postgres
async def test_a_read_whose_connection_dies_in_use_is_retried_once_on_a_new_one(
    database_url: str, is_postgres: bool
) -> None:
    """Issue 14 item 14: the client of a read never sees a lost connection: the read runs again, once."""
    if not is_postgres:
        pytest.skip("a connection ended by the server is proven on PostgreSQL")
    db = Database(database_url, pool_size=1)
    attempts: list[int] = []
    try:
        async with db.read() as conn:
            first = await _backend(conn)
        status, _headers, body = await _call(
            DatabaseFaultMiddleware(_app_ending_its_first_connection(db, attempts)), "GET"
        )
        assert (status, attempts) == (200, [1, 2])
        assert int(body) != first
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_a_write_whose_connection_dies_is_not_repeated_and_answers_503_with_retry_after(
    database_url: str, is_postgres: bool
) -> None:
    """Issue 14 item 14: a write might have taken effect, so it is not run again: its client retries with its
    Idempotency-Key after the 503's Retry-After."""
    if not is_postgres:
        pytest.skip("a connection ended by the server is proven on PostgreSQL")
    db = Database(database_url, pool_size=1)
    attempts: list[int] = []
    try:
        status, headers, body = await _call(
            DatabaseFaultMiddleware(_app_ending_its_first_connection(db, attempts)), "POST"
        )
        assert (status, attempts) == (503, [1])
        assert headers["content-type"] == "application/problem+json" and headers["retry-after"] == "1"
        assert json.loads(body)["code"] == "database_unavailable"
    finally:
        await db.dispose()


async def test_a_database_that_cannot_be_reached_answers_503_database_unavailable_not_500() -> None:
    """Issue 14 item 14: nothing listens where the database should be (down, restarting): 503 with Retry-After,
    after one retry for a read, never an error escaping to the server (500 or a dropped connection)."""
    db = Database(f"postgresql://postgres@127.0.0.1:{free_port()}/billing", pool_size=1)
    attempts: list[int] = []

    async def app(scope, receive, send) -> None:
        attempts.append(1)
        async with db.read() as conn:
            await conn.execute(text("SELECT 1"))

    try:
        status, headers, body = await _call(DatabaseFaultMiddleware(app), "GET")
        assert (status, len(attempts), headers["retry-after"]) == (503, 2, "1")
        assert json.loads(body)["code"] == "database_unavailable"
    finally:
        await db.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("cut", ["after", "before"])
async def test_a_commit_whose_answer_is_lost_is_reported_as_of_unknown_outcome(
    database_url: str, is_postgres: bool, cut: str
) -> None:
    """Issue 14 item 14: the connection lost between sending COMMIT and its answer: the transaction may have
    committed (`after`: it did) or not (`before`), and the caller cannot tell which: `CommitOutcomeUnknown`,
    not an error that says nothing was done. A statement failing before COMMIT is not of unknown outcome."""
    if not is_postgres:
        pytest.skip("a connection cut mid-COMMIT is proven on PostgreSQL")
    with CuttingProxy(database_url) as proxy:
        db = Database(proxy.url(), pool_size=1)
        try:
            async with db.transaction() as conn:
                await conn.execute(text("CREATE TEMP TABLE IF NOT EXISTS never (n int)"))
            proxy.arm(cut)
            with pytest.raises(CommitOutcomeUnknown):
                async with db.transaction() as conn:
                    await conn.execute(text("SELECT 1"))
            assert proxy.cuts == 1
            with pytest.raises(DBAPIError) as failed:
                async with db.transaction() as conn:
                    await conn.execute(text("SELECT * FROM no_such_table"))
            assert not isinstance(failed.value, CommitOutcomeUnknown)
        finally:
            await db.dispose()
