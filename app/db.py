"""The database: one async engine for SQLite (embedded default) and PostgreSQL (production), one code path.

Writes run in `db.transaction()`. Reads that need no transaction use `db.read()`, and single-statement writes
`db.autocommit()`: the same autocommit connection, with no BEGIN/COMMIT round trips on the hot path.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator

from sqlalchemy import event
from sqlalchemy.engine import make_url
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


def _sqlite_setup(engine: AsyncEngine) -> None:
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

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        # Write transactions take SQLite's write lock up front, so two writers queue instead of deadlocking on a
        # lock upgrade. Autocommit reads start no transaction at all.
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.backend = backend_name(url)
        kwargs: dict = {"pool_pre_ping": False, "hide_parameters": True}  # no personal data in error logs
        if self.backend == "postgresql":
            # A fixed pool: under a burst, requests queue for a connection instead of opening and closing extra
            # ones (a new asyncpg connection costs more CPU than the request it would serve).
            kwargs.update(pool_size=pool_size, max_overflow=0, pool_timeout=30)
        self.engine: AsyncEngine = create_async_engine(async_url(url), **kwargs)
        if self.backend == "sqlite":
            _sqlite_setup(self.engine)
        self._reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @property
    def is_postgres(self) -> bool:
        return self.backend == "postgresql"

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """An autocommit connection: for reads, and for single-statement writes (atomic by themselves), with no
        BEGIN/COMMIT round trips."""
        async with self._reader.connect() as conn:
            yield conn

    autocommit = read  # the same connection, named for a single-statement write

    async def dispose(self) -> None:
        await self.engine.dispose()


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
