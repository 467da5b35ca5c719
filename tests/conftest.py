"""One migrated database per test run (a SQLite file, or a fresh PostgreSQL database when
BILLING_TEST_POSTGRES_URL names a server), emptied before each test that uses it. The schema comes only from the
migrations. Tests talk to the service through HTTP (Starlette's TestClient), with real parts injected."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, text
from sqlalchemy.engine import make_url

from app.auth import mint_token
from app.cli import migrate
from app.clock import SystemClock
from app.config import Settings
from app.db import Database
from app.models import metadata


class ManualWall(SystemClock):
    """Real time plus an offset the test moves: infrastructure time (leases, "no answer for 5 minutes"), not the
    sandbox clock."""

    def __init__(self) -> None:
        self.offset = _dt.timedelta()

    def wall(self) -> _dt.datetime:
        return SystemClock.wall() + self.offset


SECRET = "test-secret-0123456789abcdef-0123456789"
START = "2030-01-15T12:00:00Z"  # where every test's sandbox clock starts


def _admin(coro_fn, url: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
        try:
            await coro_fn(conn)
        finally:
            await conn.close()

    asyncio.run(run())


@contextlib.contextmanager
def fresh_database(server: str, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on `server` (a maintenance URL), dropped afterwards, even if in use."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"

    async def create(conn) -> None:
        await conn.execute(f'CREATE DATABASE "{name}"')

    async def drop(conn) -> None:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    _admin(create, server)
    try:
        yield make_url(server).set(database=name).render_as_string(False)
    finally:
        _admin(drop, server)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory):
    server = os.environ.get("BILLING_TEST_POSTGRES_URL")
    if not server:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'billing.db'}"
        migrate(url)
        yield url
        return
    with fresh_database(server, "billing_test") as url:
        migrate(url)
        yield url


@pytest.fixture(scope="session")
def is_postgres(database_url: str) -> bool:
    return database_url.startswith("postgresql")


async def _empty(url: str) -> None:
    db = Database(url, pool_size=1)
    try:
        async with db.transaction() as conn:
            if db.is_postgres:
                names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
                await conn.execute(text(f"TRUNCATE {names} CASCADE"))
            else:
                for table in reversed(metadata.sorted_tables):
                    await conn.execute(delete(table))
    finally:
        await db.dispose()


@pytest.fixture
def clean_db(database_url: str) -> str:
    asyncio.run(_empty(database_url))
    return database_url


def make_settings(database_url: str, **overrides) -> Settings:
    values = dict(
        database_url=database_url,
        auth_secret=SECRET,
        sandbox=True,
        demo_plans=False,
        scheduler_enabled=False,
        log_level="WARNING",
        stripe_api_key="",
        smtp_url="",
        cors_origins=[],
        rate_limit_writes_per_minute=0,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(clean_db: str) -> Settings:
    return make_settings(clean_db)


@pytest.fixture
def app(settings: Settings):
    from app.main import create_app

    return create_app(settings)


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as c:
        c.post("/v1/sandbox/clock", json={"now": START}, headers=ops_headers())
        yield c


def token(sub: str, role: str = "customer", *, secret: str = SECRET, hours: float = 1.0) -> str:
    now = _dt.datetime.now(_dt.UTC)  # tokens expire in real time
    return mint_token(secret, sub, role, _dt.timedelta(hours=hours), now)


def customer_headers(sub: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub)}"}


def ops_headers(sub: str = "staff-1") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, 'ops')}"}


def make_customer(client, sub: str, email: str | None = None, country: str = "US") -> dict:
    response = client.post(
        "/v1/customers",
        json={"email": email or f"{sub}@example.com", "name": f"Name {sub}", "country": country},
        headers=customer_headers(sub),
    )
    assert response.status_code == 201, response.text
    return response.json()


def make_plan(
    client,
    code: str = "pro-monthly",
    amount: int = 2000,
    interval: str = "month",
    tier: str = "subscription",
    trial_available: bool = True,
    currency: str = "usd",
) -> dict:
    response = client.post(
        "/v1/plans",
        json={
            "code": code,
            "name": code.title(),
            "tier": tier,
            "interval": interval,
            "amount": amount,
            "currency": currency,
            "trial_available": trial_available,
        },
        headers=ops_headers(),
    )
    assert response.status_code == 201, response.text
    return response.json()


def move_clock(client, now: str) -> dict:
    response = client.post("/v1/sandbox/clock", json={"now": now}, headers=ops_headers())
    assert response.status_code == 200, response.text
    return response.json()


def run_due(client) -> dict:
    response = client.post("/v1/sandbox/run-due", headers=ops_headers())
    assert response.status_code == 200, response.text
    return response.json()["jobs"]
