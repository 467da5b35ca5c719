"""Claiming a batch of due work: the one place that knows how the two databases differ.

Every scheduled job (renewals, retries, trial notices, notice delivery, refund retries, gateway cancellations)
takes its work the same way: select what is due, lock it so that another run (another replica) cannot take the
same rows, and optionally move a lease column on so that the rows stay taken after this transaction commits
while a slow step (the gateway, SMTP) runs outside any transaction.

- PostgreSQL: `FOR UPDATE OF <table> SKIP LOCKED`: two replicas split the due rows between them instead of
  waiting on each other.
- SQLite: one writer at a time (the database is locked by the first write, and our transactions take the
  write lock up front), so a plain SELECT inside the transaction is already exclusive.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, Row, Select, Table, update
from sqlalchemy.ext.asyncio import AsyncConnection


def claimable(stmt: Select[Any], *, of: Table, limit: int, postgres: bool) -> Select[Any]:
    """`stmt` limited to one batch and, on PostgreSQL, locked without waiting for rows another run holds."""
    stmt = stmt.limit(limit)
    return stmt.with_for_update(of=of, skip_locked=True) if postgres else stmt


async def claim_batch(
    conn: AsyncConnection,
    stmt: Select[Any],
    *,
    of: Table,
    limit: int,
    postgres: bool,
    lease: Column[Any] | None = None,
    until: _dt.datetime | None = None,
) -> Sequence[Row[Any]]:
    """The due rows of `stmt` (at most `limit`), taken by this transaction; with `lease`, that column of every
    row taken is set to `until` in the same transaction (`stmt` must then select `of`'s `id`)."""
    rows = (await conn.execute(claimable(stmt, of=of, limit=limit, postgres=postgres))).all()
    if rows and lease is not None:
        await conn.execute(update(of).where(of.c.id.in_([row.id for row in rows])).values({lease.name: until}))
    return rows
