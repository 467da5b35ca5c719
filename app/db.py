"""The database: one async engine for SQLite (embedded default) and PostgreSQL (production), one code path.

Writes run in `db.transaction()`. Reads that need no transaction use `db.read()`, and single-statement writes
`db.autocommit()`: the same autocommit connection, with no BEGIN/COMMIT round trips on the hot path.

Connections stay open between uses, in two lanes (`_Lane`): one for transactions, one for autocommit statements,
each with its own engine. Taking a connection from a lane is a list operation; a checkout from SQLAlchemy's pool
and its return cost more CPU than the one statement of a read (measured: about 110 us against 160 us).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
from collections.abc import AsyncIterator

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

_ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}
_SYNC_DRIVERS = {"postgresql": "postgresql+psycopg", "sqlite": "sqlite"}


def async_url(url: str) -> str:
    """Accept plain `postgresql://user@host/db` and `sqlite:///path` URLs and pick the async driver."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in ("postgresql", "sqlite"):
        raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}")
    if "+" in parsed.drivername:
        return parsed.render_as_string(hide_password=False)
    return parsed.set(drivername=_ASYNC_DRIVERS[parsed.drivername]).render_as_string(hide_password=False)


def backend_name(url: str) -> str:
    return make_url(url).get_backend_name()


def _sqlite_setup(engine: AsyncEngine, *, transactional: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        # Let SQLAlchemy, not the driver, decide when transactions begin (see `_on_begin`).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    if transactional:
        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn):  # noqa: ANN001
            # Write transactions take SQLite's write lock up front, so two writers queue instead of deadlocking on
            # a lock upgrade. The autocommit engine starts no transaction at all.
            conn.exec_driver_sql("BEGIN IMMEDIATE")


class _Lane:
    """At most `size` connections of one engine, kept open between uses.

    Taking an idle connection is a list operation. A use that finds none waits in line, first come first served:
    a connection handed back goes straight to the longest waiter, so a newcomer cannot take it first and starve
    those already waiting. The wait lasts at most `timeout` seconds (then `sqlalchemy.exc.TimeoutError`, as a
    pool checkout would raise). A connection goes back only in a known state; it is closed instead when SQLAlchemy
    invalidated it (the server went away) or when its use was interrupted (cancelled mid-statement, its protocol
    state unknown), and its slot is free for a new one."""

    def __init__(self, engine: AsyncEngine, size: int, timeout: float, *, autocommit: bool) -> None:
        self._engine = engine
        self._timeout = timeout
        # SQLAlchemy begins a transaction object on a connection's first statement even in AUTOCOMMIT mode, where
        # it is nothing on the server: only on the transactions' lane does an open one mean a use left it open.
        self._autocommit = autocommit
        self._idle: list[AsyncConnection | None] = [None] * size  # None: a free slot, no connection opened yet
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        conn = self._idle.pop() if self._idle else await self._wait()
        if conn is None:
            try:
                conn = await self._engine.connect()
            except BaseException:
                self._hand_back(None)
                raise
        try:
            yield conn
        except Exception:
            await self._give_back(conn)
            raise
        except BaseException:  # cancelled (or interrupted) mid-use: the connection's state is unknown
            await self._close(conn)
            raise
        else:
            await self._give_back(conn)

    async def _wait(self) -> AsyncConnection | None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self._timeout):
                return await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():  # handed a connection just as the wait ended
                self._hand_back(waiter.result())
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise PoolTimeout(f"no database connection free within {self._timeout:g} s") from None
            raise

    def _hand_back(self, conn: AsyncConnection | None) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    async def _give_back(self, conn: AsyncConnection) -> None:
        if conn.invalidated or (not self._autocommit and conn.in_transaction()):
            # Invalidated: the server went away. Still in a transaction: a caller began one and did not end it.
            await self._close(conn)
        else:
            self._hand_back(conn)

    async def _close(self, conn: AsyncConnection) -> None:
        try:
            await conn.close()
        except Exception:  # noqa: S110 - a broken connection may fail to close; its slot is freed regardless
            pass
        finally:
            self._hand_back(None)

    async def close_all(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self._idle = [None] * len(idle)


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, pool_timeout: float = 30.0) -> None:
        self.url = url
        self.backend = backend_name(url)
        kwargs: dict = {"pool_pre_ping": False, "hide_parameters": True}  # no personal data in error logs
        # Each lane holds its engine's connections open; the engine's pool only opens them. `pool_size` is for
        # transactions; autocommit statements, one per use and short, get half as many.
        autocommit_size = max(1, pool_size // 2)
        self.engine: AsyncEngine = create_async_engine(async_url(url), **kwargs,
                                                       **self._pool(pool_size, pool_timeout))
        self.autocommit_engine: AsyncEngine = create_async_engine(
            async_url(url), isolation_level="AUTOCOMMIT", **kwargs, **self._pool(autocommit_size, pool_timeout))
        if self.backend == "sqlite":
            _sqlite_setup(self.engine, transactional=True)
            _sqlite_setup(self.autocommit_engine, transactional=False)
        self._transactions = _Lane(self.engine, pool_size, pool_timeout, autocommit=False)
        self._autocommit = _Lane(self.autocommit_engine, autocommit_size, pool_timeout, autocommit=True)

    def _pool(self, size: int, timeout: float) -> dict:
        # A fixed pool on PostgreSQL: under a burst, requests queue for a connection instead of opening and closing
        # extra ones (a new asyncpg connection costs more CPU than the request it would serve).
        return {"pool_size": size, "max_overflow": 0, "pool_timeout": timeout} if self.is_postgres else {}

    @property
    def is_postgres(self) -> bool:
        return self.backend == "postgresql"

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self._transactions.connection() as conn, conn.begin():
            yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """An autocommit connection: for reads, and for single-statement writes (atomic by themselves), with no
        BEGIN/COMMIT round trips."""
        async with self._autocommit.connection() as conn:
            yield conn

    autocommit = read  # the same connection, named for a single-statement write

    async def dispose(self) -> None:
        await self._transactions.close_all()
        await self._autocommit.close_all()
        await self.engine.dispose()
        await self.autocommit_engine.dispose()


@functools.cache
def _insert_ignoring(dialect: str, table, conflict_on: tuple[str, ...] | None, returning: str | None):  # noqa: ANN001, ANN202
    # Built once per table: values travel as parameters, so SQLAlchemy caches the compiled statement (a multi-row
    # VALUES clause would be compiled again on every call). Both databases support RETURNING (SQLite since 3.35).
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = dialect_insert(table).on_conflict_do_nothing(index_elements=list(conflict_on) if conflict_on else None)
    if returning == "keys":
        return stmt.returning(*table.primary_key.columns)
    return stmt.returning(*table.c) if returning == "rows" else stmt


async def insert_ignoring_conflict(conn: AsyncConnection, table, values, *, conflict_on=None) -> int:  # noqa: ANN001
    """`INSERT ... ON CONFLICT DO NOTHING` of one row (a dict) or many (a list) on either database; returns how
    many rows were inserted (0 for a row that existed already)."""
    many = isinstance(values, list)
    if many and not values:
        return 0
    stmt = _insert_ignoring(conn.dialect.name, table, tuple(conflict_on) if conflict_on else None,
                            "keys" if many else None)
    result = await conn.execute(stmt, values)
    return len(result.all()) if many else result.rowcount


async def insert_ignoring_returning(conn: AsyncConnection, table, values, *, conflict_on) -> list:  # noqa: ANN001
    """`INSERT ... ON CONFLICT DO NOTHING RETURNING *` of one row or many: the rows inserted, with every column;
    a row whose key existed already is not among them."""
    if isinstance(values, list) and not values:
        return []
    return (await conn.execute(_insert_ignoring(conn.dialect.name, table, tuple(conflict_on), "rows"), values)).all()
