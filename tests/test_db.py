"""The database's connection lanes (app/db.py): connections stay open between uses, are handed out first come first
served, and a connection in an unknown state is closed and replaced instead of reused."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.db import Database


async def _backend(conn):  # noqa: ANN001, ANN202
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
        with pytest.raises(PoolTimeout, match="no database connection free within 0.2 s"):
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
                await conn.execute(text("CREATE TEMP TABLE lane_child (parent INTEGER REFERENCES lane_parent (id) "
                                        "DEFERRABLE INITIALLY DEFERRED)"))
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
        database_url: str, is_postgres: bool) -> None:
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
async def test_when_the_server_drops_its_connections_one_use_fails_and_the_idle_ones_are_replaced(
        database_url: str, is_postgres: bool) -> None:
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
        async with other.read() as admin:  # as a server restart would
            for pid in opened:
                await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError):
            async with db.transaction() as conn:
                await conn.execute(text("SELECT 1"))
        dropped = list(opened)
        opened.clear()
        await asyncio.gather(use(), use())  # both connections work: the other dropped one was closed with the first
        assert not set(opened) & set(dropped)
    finally:
        await db.dispose()
        await other.dispose()
