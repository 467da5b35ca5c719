"""The database's connection lanes (app/db.py): connections stay open between uses, are handed out first come first
served, and a connection in an unknown state is closed and replaced instead of reused."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.db import Database


async def _backend(conn) -> int:  # noqa: ANN001
    """Which server connection this is: PostgreSQL's backend pid, SQLite's connection object."""
    if conn.dialect.name == "postgresql":
        return (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    return id((await conn.get_raw_connection()).driver_connection)


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


async def test_an_error_in_a_use_leaves_its_connection_usable(database_url: str) -> None:
    db = Database(database_url, pool_size=2)
    try:
        async with db.read() as conn:
            before = await _backend(conn)
        with pytest.raises(DBAPIError):
            async with db.read() as conn:
                await conn.execute(text("SELECT * FROM no_such_table"))
        with pytest.raises(DBAPIError):
            async with db.transaction() as conn:
                await conn.execute(text("SELECT * FROM no_such_table"))
        async with db.read() as conn:
            assert await _backend(conn) == before  # kept: an autocommit statement's error ends nothing
        async with db.transaction() as conn:  # rolled back, and usable again
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
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
async def test_a_connection_the_server_dropped_is_replaced(database_url: str, is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("terminating a server connection is proven on PostgreSQL")
    db = Database(database_url, pool_size=1)
    other = Database(database_url, pool_size=1)
    try:
        async with db.transaction() as conn:
            dropped = await _backend(conn)
        async with other.read() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dropped})
        with pytest.raises(DBAPIError):
            async with db.transaction() as conn:
                await conn.execute(text("SELECT 1"))
        async with db.transaction() as conn:
            assert await _backend(conn) != dropped
    finally:
        await db.dispose()
        await other.dispose()
