"""I1/I2: gapless numbering under concurrency, on PostgreSQL: two "replicas" (two engines, each with its own
connections) issue invoices at once, in batches and one by one, some of their transactions rolled back after
taking numbers; the numbers committed are exactly 1..N, each payment has exactly one invoice."""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import func, select

from app.db import Database
from app.invoices import service
from app.models import invoices
from tests.api.test_invoices import NOW, SELLER, paid, payments_before_invoices
from tests.conftest import make_plan

PAYMENTS = 40


class Abandoned(Exception):
    """Raised inside an issuing transaction after it took its numbers: the transaction rolls back."""


async def _issue(db: Database, payment_ids: list[str], policies, abandon: bool) -> None:
    try:
        async with db.transaction() as conn:
            await service.issue_invoices(conn, payment_ids, NOW, SELLER, policies, render_pdf=False)
            await asyncio.sleep(random.uniform(0, 0.01))  # hold the counter's lock a while: the others queue
            if abandon:
                raise Abandoned
    except Abandoned:
        pass


async def _race(url: str, payment_ids: list[str], policies) -> None:
    replicas = [Database(url, pool_size=4), Database(url, pool_size=4)]
    rng = random.Random(17)
    try:
        work = []
        index = 0
        while index < len(payment_ids):
            size = rng.choice([1, 1, 3, 5])
            chunk = payment_ids[index : index + size]
            index += size
            work.append((rng.choice(replicas), chunk, rng.random() < 0.25))
        # First pass: everything at once, a quarter abandoned; second pass: whatever is still uninvoiced.
        await asyncio.gather(*(_issue(db, chunk, policies, abandon) for db, chunk, abandon in work))
        await asyncio.gather(*(_issue(replicas[n % 2], [pid], policies, False) for n, pid in enumerate(payment_ids)))
    finally:
        for db in replicas:
            await db.dispose()


def test_I1_numbers_stay_gapless_under_two_racing_replicas(client, is_postgres: bool, monkeypatch) -> None:
    if not is_postgres:
        pytest.skip("the race needs PostgreSQL's row locks (SQLite has one writer)")
    payments_before_invoices(monkeypatch)
    make_plan(client, "pro-monthly", amount=1000, currency="eur")
    payment_ids = [paid(client, f"c{n}")[1]["id"] for n in range(PAYMENTS)]
    ctx = client.app.state.ctx
    url = ctx.settings.database_url
    client.portal.call(_race, url, payment_ids, ctx.policies)

    async def numbers():
        async with ctx.db.transaction() as conn:
            rows = (await conn.execute(select(invoices.c.number, invoices.c.payment_id))).all()
            count = (await conn.execute(select(func.count()).select_from(invoices))).scalar_one()
            return rows, count

    rows, count = client.portal.call(numbers)
    assert count == PAYMENTS
    assert sorted(payment for _, payment in rows) == sorted(payment_ids)  # exactly one each
    assert sorted(number for number, _ in rows) == [f"INV-2030-{n:06d}" for n in range(1, PAYMENTS + 1)]
