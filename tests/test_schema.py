"""The models and the migrations agree, and `billing migrate` is safe to run again."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from app.cli import alembic_config, migrate
from app.db import Database
from app.models import metadata


def _on(url: str, inspect_sync):
    async def run():
        db = Database(url, pool_size=1)
        try:
            async with db.engine.connect() as conn:
                return await conn.run_sync(inspect_sync)
        finally:
            await db.dispose()

    return asyncio.run(run())


def _diff(sync_conn) -> list:
    context = MigrationContext.configure(
        sync_conn, opts={"compare_type": True, "compare_server_default": True, "target_metadata": metadata}
    )
    return compare_metadata(context, metadata)


def test_the_migrated_schema_matches_the_models(database_url: str) -> None:
    diff = _on(database_url, _diff)
    assert diff == [], "models and migrations disagree; write a migration for:\n" + "\n".join(map(str, diff))


def _state(sync_conn) -> tuple[set[str], str | None]:
    tables = set(inspect(sync_conn).get_table_names())
    return tables, MigrationContext.configure(sync_conn).get_current_revision()


def test_migrate_is_idempotent_and_makes_every_table(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None
    migrate(url)
    first = _on(url, _state)
    migrate(url)  # a second run changes nothing and does not fail
    second = _on(url, _state)
    assert first == second
    tables, revision = second
    assert revision == head
    missing = set(metadata.tables) - tables
    assert not missing, f"tables in the models but not made by the migrations: {sorted(missing)}"
    assert _on(url, _diff) == []
