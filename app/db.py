"""The database: one async engine for SQLite (embedded default) and PostgreSQL (production), one code path.

Writes run in `db.transaction()`. Reads that need no transaction use `db.read()`, and single-statement writes
`db.autocommit()`: the same autocommit connection, with no BEGIN/COMMIT round trips on the hot path.

Connections stay open between uses, in two lanes (`_Lane`): one for transactions, one for autocommit statements,
each with its own engine. Taking a connection from a lane is a list operation; a checkout from SQLAlchemy's pool
and its return cost almost as much CPU as the one statement of a read (measured: about 110-130 us against
120-180 us, bench/RESULTS.md), so a read would nearly double its database CPU.

When the database goes away (a failover, a pooler or server restart, `pg_terminate_backend`), a connection found
dead when taken from its lane (the driver saw the server close it: a local check, no round trip) is replaced by a
new one, and `unavailable(exc)` tells the HTTP layer that an error means "the database cannot be reached" (503
`database_unavailable`, a read retried once: app/availability.py), not a bug. A transaction whose COMMIT was sent
and never answered may have committed: it raises `CommitOutcomeUnknown`, so that nobody repeats its effects
blindly (app/idempotency.py keeps such a request's key).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Insert, Table, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

_ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}
_SYNC_DRIVERS = {"postgresql": "postgresql+psycopg", "sqlite": "sqlite"}
# SQLSTATEs of a server that cannot serve this connection: connection exceptions (class 08), shutting down or
# starting up (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now), too many connections.
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")


# Run in each transaction of this context just before its COMMIT (an idempotent request's witness that it committed:
# app/idempotency.py). Unset, as for every request without an Idempotency-Key, it costs nothing.
before_commit: contextvars.ContextVar[Callable[[AsyncConnection], Awaitable[None]] | None] = contextvars.ContextVar(
    "before_commit", default=None
)


class CommitOutcomeUnknown(Exception):
    """The connection was lost after COMMIT was sent and before its answer came: the transaction may or may not
    have committed. Raised from `Database.transaction()` with the driver's error as its cause."""


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, the driver errors SQLAlchemy wrapped (`orig`), their causes and contexts, and the members of
    exception groups; each once."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend([getattr(current, "orig", None), current.__cause__, current.__context__])
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database could not be reached or the connection to it was lost (a fault of the
    infrastructure, answered 503 and worth a retry), not a statement the database refused."""
    for cause in _causes(exc):
        if isinstance(cause, (CommitOutcomeUnknown, PoolTimeout, ConnectionError, socket.gaierror)):
            return True
        if isinstance(cause, SQLAlchemyError) and getattr(cause, "connection_invalidated", False):
            return True
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str) and state.startswith(_UNAVAILABLE_STATES):
            return True
        if type(cause).__name__ == "InterfaceError" and "connection is closed" in str(cause):
            return True
    return False


def _answer_lost(exc: BaseException) -> bool:
    """Whether the statement was sent and the connection then lost with no answer from the server (asyncpg's
    ConnectionDoesNotExistError, a reset socket): its outcome is unknown. An error the server sent (57P01 when it
    is being shut down, say) is an answer: the statement did not take effect."""
    return any(
        type(cause).__name__ == "ConnectionDoesNotExistError" or isinstance(cause, (ConnectionError, TimeoutError))
        for cause in _causes(exc)
    )


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
    def _on_connect(dbapi_conn: Any, _record: object) -> None:  # the driver's (sqlite3) connection
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
        def _on_begin(conn: Connection) -> None:
            # Write transactions take SQLite's write lock up front, so two writers queue instead of deadlocking on
            # a lock upgrade. The autocommit engine starts no transaction at all.
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def _closed_by_server(conn: AsyncConnection) -> bool:
    """Whether the driver already knows the server closed this connection (asyncpg saw the socket close: a
    terminated backend, a restarted server). A local check, no round trip."""
    try:
        driver = conn.sync_connection.connection.dbapi_connection.driver_connection  # type: ignore[union-attr]  # None: caught below
    except Exception:  # not connected (None on the way): as good as closed
        return True
    is_closed = getattr(driver, "is_closed", None)  # asyncpg's; aiosqlite's connections have none
    return bool(is_closed()) if is_closed is not None else False


class _Lane:
    """At most `size` connections of one engine, kept open between uses.

    Taking an idle connection is a list operation. A use that finds none waits in line, first come first served:
    a connection handed back goes straight to the longest waiter, so a newcomer cannot take it first and starve
    those already waiting. The wait lasts at most `timeout` seconds (then `sqlalchemy.exc.TimeoutError`, as a
    pool checkout would raise).

    A connection goes back only in a known state. It is closed for good, and its slot freed for a new one, when its
    use ended in a database error (a failed COMMIT, say, which on SQLite leaves the transaction open and its write
    lock held) or was interrupted (cancelled mid-statement: its protocol state is unknown), or when it was opened
    before `close_all`. When SQLAlchemy found the server gone, the idle connections are closed as well, as its pool
    would invalidate them all: they were very likely cut off too."""

    def __init__(self, engine: AsyncEngine, size: int, timeout: float, *, autocommit: bool) -> None:
        self._engine = engine
        self._timeout = timeout
        # SQLAlchemy begins a transaction object on a connection's first statement even in AUTOCOMMIT mode, where
        # it is nothing on the server (so no `begin()` on this lane's connections): only on the transactions' lane
        # does an open one mean a use left it open.
        self._autocommit = autocommit
        self._idle: list[AsyncConnection | None] = [None] * size  # None: a free slot, no connection opened yet
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self._generation = 0  # moved on by close_all
        self._born: dict[AsyncConnection, int] = {}  # the generation each open connection was opened in

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        conn = self._idle.pop() if self._idle else await self._wait()
        if conn is not None and (
            self._born.get(conn) != self._generation  # opened before close_all
            or _closed_by_server(conn)
        ):
            await self._retire(conn)
            conn = None
        if conn is None:
            try:
                conn = await self._engine.connect()
            except BaseException:
                self._hand_back(None)
                raise
            self._born[conn] = self._generation
        try:
            yield conn
        except SQLAlchemyError as exc:
            await self._close(conn, server_gone=getattr(exc, "connection_invalidated", False))
            raise
        except Exception:
            await self._give_back(conn)
            raise
        except BaseException:  # cancelled (or interrupted) mid-use
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
        if (
            conn.invalidated
            or self._born.get(conn) != self._generation
            or (not self._autocommit and conn.in_transaction())
        ):  # a use began a transaction and left it open
            await self._close(conn)
        else:
            self._hand_back(conn)

    async def _close(self, conn: AsyncConnection, *, server_gone: bool = False) -> None:
        """Close `conn` for good and free its slot; with `server_gone` (a disconnect), the idle ones too."""
        await self._retire(conn)
        self._hand_back(None)
        if server_gone:
            await self._retire_idle(graceful=False)

    async def _retire(self, conn: AsyncConnection, *, graceful: bool = False) -> None:
        """Take `conn` out of the lane. Graceful: back to its engine's pool, which closes it when disposed. Else
        closed at once (a suspect connection, or one whose pool was disposed already)."""
        self._born.pop(conn, None)
        try:
            if not graceful:
                await conn.invalidate()  # closes the driver's connection; close() alone returns it to the pool
            await conn.close()
        except Exception:
            pass

    async def _retire_idle(self, *, graceful: bool) -> None:
        idle, self._idle = self._idle, [None] * len(self._idle)
        for conn in idle:
            if conn is not None:
                await self._retire(conn, graceful=graceful)

    async def close_all(self) -> None:
        """Hand the idle connections back to the engine's pool (for `dispose` to close); one in use then is closed
        when it is handed back. The lane stays usable: later uses open new connections (on their event loop)."""
        self._generation += 1
        await self._retire_idle(graceful=True)


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, pool_timeout: float = 30.0) -> None:
        self.url = url
        self.backend = backend_name(url)
        kwargs: dict = {"pool_pre_ping": False, "hide_parameters": True}  # no personal data in error logs
        # Each lane holds its engine's connections open; the engine's pool only opens them. `pool_size` is for
        # transactions; autocommit statements, one per use and short, get half as many.
        autocommit_size = max(1, pool_size // 2)
        self.engine: AsyncEngine = create_async_engine(async_url(url), **kwargs, **self._pool(pool_size, pool_timeout))
        self.autocommit_engine: AsyncEngine = create_async_engine(
            async_url(url), isolation_level="AUTOCOMMIT", **kwargs, **self._pool(autocommit_size, pool_timeout)
        )
        if self.backend == "sqlite":
            _sqlite_setup(self.engine, transactional=True)
            _sqlite_setup(self.autocommit_engine, transactional=False)
        self._transactions = _Lane(self.engine, pool_size, pool_timeout, autocommit=False)
        self._autocommit = _Lane(self.autocommit_engine, autocommit_size, pool_timeout, autocommit=True)

    @staticmethod
    def _pool(size: int, timeout: float) -> dict:
        # The engine's pool only opens the lane's connections: as many as the lane holds, no more.
        return {"pool_size": size, "max_overflow": 0, "pool_timeout": timeout}

    @property
    def is_postgres(self) -> bool:
        return self.backend == "postgresql"

    @property
    def concurrent_writers(self) -> bool:
        """Whether several transactions can write (and claim work: app/claims.py) at once: PostgreSQL; SQLite has
        one writer at a time, so more than one worker only waits."""
        return self.is_postgres

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A transaction, committed when the block ends without an error. A COMMIT whose answer was lost raises
        `CommitOutcomeUnknown`; any other failure means nothing was committed."""
        committing = False
        try:
            async with self._transactions.connection() as conn, conn.begin():
                yield conn
                witness = before_commit.get()
                if witness is not None:
                    await witness(conn)
                committing = True
        except Exception as exc:
            if committing and _answer_lost(exc):
                raise CommitOutcomeUnknown("the connection was lost during COMMIT") from exc
            raise

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
def _insert_ignoring(dialect: str, table: Table, conflict_on: tuple[str, ...] | None, returning: str | None) -> Insert:
    # Built once per table: values travel as parameters, so SQLAlchemy caches the compiled statement (a multi-row
    # VALUES clause would be compiled again on every call). Both databases support RETURNING (SQLite since 3.35).
    from sqlalchemy.dialects import postgresql, sqlite

    index_elements = list(conflict_on) if conflict_on else None
    stmt: Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing(index_elements=index_elements)
    else:
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=index_elements)
    if returning == "keys":
        return stmt.returning(*table.primary_key.columns)
    return stmt.returning(*table.c) if returning == "rows" else stmt


Values = dict[str, Any] | list[dict[str, Any]]  # one row, or many


async def insert_ignoring_conflict(
    conn: AsyncConnection, table: Table, values: Values, *, conflict_on: Sequence[str] | None = None
) -> int:
    """`INSERT ... ON CONFLICT DO NOTHING` of one row (a dict) or many (a list) on either database; returns how
    many rows were inserted (0 for a row that existed already)."""
    many = isinstance(values, list)
    if many and not values:
        return 0
    stmt = _insert_ignoring(
        conn.dialect.name, table, tuple(conflict_on) if conflict_on else None, "keys" if many else None
    )
    result = await conn.execute(stmt, values)
    return len(result.all()) if many else result.rowcount


async def insert_ignoring_returning(
    conn: AsyncConnection, table: Table, values: Values, *, conflict_on: Sequence[str]
) -> list[Any]:
    """`INSERT ... ON CONFLICT DO NOTHING RETURNING *` of one row or many: the rows inserted, with every column;
    a row whose key existed already is not among them."""
    if isinstance(values, list) and not values:
        return []
    return list(
        (await conn.execute(_insert_ignoring(conn.dialect.name, table, tuple(conflict_on), "rows"), values)).all()
    )
