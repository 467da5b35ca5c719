"""`billing serve` (or any `billing` command) under test conditions that only the environment sets:

- RELIABILITY_WALL_OFFSET_SECONDS: the process's *real* clock runs ahead by that much. It models a process that
  starts after that much real time has passed, e.g. a replica restarted after the 2-minute work leases
  (`claimed_until`, `lease_until`) that a killed replica took have run out, without the test sleeping for two
  minutes. The business clock (the sandbox clock in the database) is not touched; only `SystemClock.wall`, the
  infrastructure time used for leases, idempotency-key ages and webhook timestamps.
- RELIABILITY_CHARGE_DELAY_SECONDS / RELIABILITY_CHARGE_LOG: the off-session sandbox charges (renewals, retries)
  of a batch are made, then noted in that file, then answered only after that delay, as a slow gateway would. A
  test that sees a charge noted knows the process is inside a batch, after the money moved and before it is
  recorded.
- RELIABILITY_LOST_HEARTBEAT_ANSWERS: the first that many heartbeats of a batch being charged (the autocommit
  UPDATE of `subscriptions.claimed_until`, app/subscriptions/tasks.py) take effect in the database, then their
  answer is lost (a connection cut after the UPDATE committed): the database holds the new lease, the process
  does not know it.

Nothing in app/ changes: the patches are applied in this process before the app runs.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys

from app import clock

_OFFSET = _dt.timedelta(seconds=float(os.environ.get("RELIABILITY_WALL_OFFSET_SECONDS", "0")))
_real_wall = clock.SystemClock.wall
clock.SystemClock.wall = staticmethod(lambda: _real_wall() + _OFFSET)

_DELAY = float(os.environ.get("RELIABILITY_CHARGE_DELAY_SECONDS", "0"))
_LOG = os.environ.get("RELIABILITY_CHARGE_LOG", "")
if _DELAY or _LOG:
    import asyncio

    from app.gateways import sandbox

    _real_charge_many = sandbox.SandboxGateway.charge_many  # single charges go through it too

    async def _slow_charge_many(self, requests):
        results = await _real_charge_many(self, requests)  # the money has moved (the sandbox ledger is written) ...
        off_session = [request.idempotency_key for request in requests if request.off_session]
        if off_session:
            if _LOG:
                with open(_LOG, "a") as log:  # noqa: ASYNC230 - a few bytes, written before the answer's delay on purpose
                    log.writelines(f"{key}\n" for key in off_session)
            await asyncio.sleep(_DELAY)  # ... and the answer takes its time to come back
        return results

    sandbox.SandboxGateway.charge_many = _slow_charge_many

_LOST_HEARTBEATS = int(os.environ.get("RELIABILITY_LOST_HEARTBEAT_ANSWERS", "0"))
if _LOST_HEARTBEATS:
    import contextlib

    from sqlalchemy.sql.dml import Update

    from app import db

    _lost = [_LOST_HEARTBEATS]
    _real_autocommit = db.Database.autocommit

    class _AnswerLost:
        def __init__(self, conn) -> None:
            self._conn = conn

        def __getattr__(self, name: str):
            return getattr(self._conn, name)

        async def execute(self, statement, *args, **kwargs):
            result = await self._conn.execute(statement, *args, **kwargs)  # committed: autocommit
            if isinstance(statement, Update) and statement.table.name == "subscriptions" and _lost[0] > 0:
                _lost[0] -= 1
                raise ConnectionResetError("the connection was cut before the heartbeat's answer came")
            return result

    @contextlib.asynccontextmanager
    async def _autocommit(self):
        async with _real_autocommit(self) as conn:
            yield _AnswerLost(conn)

    db.Database.autocommit = _autocommit

if __name__ == "__main__":
    from app.cli import main

    raise SystemExit(main(sys.argv[1:]))
