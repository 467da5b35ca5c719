#!/usr/bin/env python3
"""An EXPERIMENT, not the service: `billing serve` with two of the changes RESULTS.md recommends applied as
monkeypatches at start-up, to measure what they are worth before anyone changes app/ (nothing in app/ is edited).

    python bench/experiment_serve.py --port 8000 [--only async-deps|cached-inserts]
    python bench/profile.py read --experiment          # profile.py starts this instead of `billing serve`

1. async-deps: `app.context.get_ctx` and `app.auth.current_principal` are plain `def` dependencies, so FastAPI
   runs each of them in the anyio thread pool (two thread hand-offs per request). Here they are replaced by
   `async def` twins with the same bodies.
2. cached-inserts: `app.db.insert_ignoring_conflict` given a list builds a multi-row `insert().values([...])`,
   which SQLAlchemy never caches ("[no key]"): it is compiled again on every call (notices, trial marks). Here a
   list is sent as one cached statement executed with the list of parameter sets (executemany / insertmanyvalues),
   with RETURNING to keep the "how many rows were inserted" answer that `mark_person` relies on.
"""

from __future__ import annotations

import argparse
import os
import sys


def patch_async_deps() -> None:
    import app.auth as auth
    import app.context as context
    from app.auth import verify_token

    async def get_ctx(request):  # noqa: ANN001, ANN202
        return request.app.state.ctx

    async def current_principal(request):  # noqa: ANN001, ANN202
        principal = getattr(request.state, "principal", None)
        if principal is None:
            principal = verify_token(request.app.state.ctx.settings.auth_secret, request.headers.get("authorization"))
            request.state.principal = principal
        return principal

    from starlette.requests import Request

    get_ctx.__annotations__ = {"request": Request}
    current_principal.__annotations__ = {"request": Request}
    # The routes capture the Depends objects of these Annotated aliases when their modules are imported, which has
    # not happened yet: swapping the callable inside the (frozen) Depends is enough.
    object.__setattr__(context.Ctx.__metadata__[0], "dependency", get_ctx)
    object.__setattr__(auth.Caller.__metadata__[0], "dependency", current_principal)


def patch_cached_inserts() -> None:
    import app.db as db

    original = db.insert_ignoring_conflict

    class Counted:
        def __init__(self, rowcount: int) -> None:
            self.rowcount = rowcount

    async def insert_ignoring_conflict(conn, table, values, *, conflict_on=None):  # noqa: ANN001, ANN202
        if not isinstance(values, list):
            return await original(conn, table, values, conflict_on=conflict_on)
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        stmt = dialect_insert(table).on_conflict_do_nothing(index_elements=conflict_on)
        stmt = stmt.returning(*table.primary_key.columns)
        result = await conn.execute(stmt, values)
        return Counted(len(result.all()))

    db.insert_ignoring_conflict = insert_ignoring_conflict
    return insert_ignoring_conflict


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--only", choices=["async-deps", "cached-inserts"], default=None)
    args = parser.parse_args()
    sys.path.insert(0, os.getcwd())
    if args.only in (None, "async-deps"):
        patch_async_deps()
    if args.only in (None, "cached-inserts"):
        replacement = patch_cached_inserts()
        import importlib
        import pkgutil

        import app

        for info in pkgutil.walk_packages(app.__path__, "app."):
            module = importlib.import_module(info.name)
            if getattr(module, "insert_ignoring_conflict", None) is not None and info.name != "app.db":
                module.insert_ignoring_conflict = replacement
    from app.cli import main as billing

    return billing(["serve", "--host", args.host, "--port", str(args.port)])


if __name__ == "__main__":
    raise SystemExit(main())
