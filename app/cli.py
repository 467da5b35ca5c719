"""The `billing` console command: migrate, serve, scheduler, token."""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import gc
import signal
import sys
from pathlib import Path

from pydantic import ValidationError

from app.config import Settings


def alembic_config(database_url: str):  # noqa: ANN201
    from alembic.config import Config

    import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["database_url"] = database_url
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    """Bring the database to the newest schema (or to `revision`)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    migrate(settings.database_url, args.revision)
    print(f"database at {args.revision}", file=sys.stderr)
    return 0


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from app.main import create_app

    if settings.sandbox:
        print("sandbox mode: payments go through the sandbox gateway; get a token with\n"
              "  billing token --sub ops-1 --role ops\n  billing token --sub user-1 --role customer",
              file=sys.stderr)
    app = create_app(settings)
    # What start-up built (modules, routes, compiled statements) lives as long as the process: moved out of the
    # garbage collector's generations, so its full collections no longer walk it (they showed as latency spikes).
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, timeout_graceful_shutdown=20,
                proxy_headers=True)
    return 0


def _cmd_scheduler(args: argparse.Namespace, settings: Settings) -> int:
    """Run the scheduled jobs alone, for deployments that separate the API from the scheduler."""
    from app.main import build_context
    from app.ops.observability import configure_logging
    from app.scheduler.runner import start_scheduler

    configure_logging(settings.log_level)
    ctx = build_context(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        scheduler = start_scheduler(ctx)
        await stop.wait()
        scheduler.shutdown(wait=True)
        await ctx.db.dispose()

    asyncio.run(main())
    return 0


def _cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from app.auth import mint_token
    from app.clock import SystemClock

    print(mint_token(settings.auth_secret, args.sub, args.role, _dt.timedelta(hours=args.hours), SystemClock.wall()))
    return 0


def _cmd_replay_events(args: argparse.Namespace, settings: Settings) -> int:
    """Fetch Stripe's events since a time and apply those we missed; events seen before change nothing."""
    from app.errors import InvalidEvent
    from app.gateways.stripe_events import parse_event
    from app.main import build_context
    from app.webhooks.service import handle_event

    if settings.gateway != "stripe":
        print("replay-events needs the Stripe gateway (BILLING_STRIPE_API_KEY)", file=sys.stderr)
        return 2
    since = _dt.datetime.fromisoformat(args.since.replace("Z", "+00:00"))
    if since.tzinfo is None:
        print("--since needs a time zone, e.g. 2026-11-29T10:00:00Z", file=sys.stderr)
        return 2
    ctx = build_context(settings)

    async def main() -> dict[str, int]:
        counts: dict[str, int] = {}
        try:
            async for event in ctx.gateway.events_since(int(since.timestamp())):
                try:  # held to the webhook's rules: one that can never be processed is counted and skipped
                    duplicate, outcome = await handle_event(ctx, parse_event(event))
                except InvalidEvent as exc:
                    print(f"skipped event {str(event.get('id'))[:80]!r}: {exc.detail}", file=sys.stderr)
                    outcome = "invalid"
                counts[outcome] = counts.get(outcome, 0) + 1
        finally:
            await ctx.gateway.aclose()
            await ctx.db.dispose()
        return counts

    counts = asyncio.run(main())
    print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no events")
    return 0


def _run_as_staff(settings: Settings, staff: str, action) -> int:  # noqa: ANN001
    """Run one ops action through the same service functions as the API, as staff member `staff`."""
    import json

    from app.auth import Principal
    from app.errors import DomainError
    from app.http import dumps
    from app.main import build_context

    ctx = build_context(settings)
    principal = Principal(sub=staff, role="ops")

    async def main() -> dict:
        try:
            return await action(ctx, principal)
        finally:
            await ctx.gateway.aclose()
            await ctx.db.dispose()

    try:
        result = asyncio.run(main())
    except DomainError as exc:
        print(json.dumps({"code": exc.code, "detail": exc.detail, **exc.extra}, default=str), file=sys.stderr)
        return 1
    print(dumps(result).decode())
    return 0


def _cmd_refund(args: argparse.Namespace, settings: Settings) -> int:
    """R2: a discretionary refund of part or all of a payment."""
    from app.refunds.schemas import RefundCreate, to_api
    from app.refunds.service import create_refund

    body = RefundCreate(amount=args.amount, reason=args.reason)

    async def action(ctx, principal):  # noqa: ANN001, ANN202
        return to_api(await create_refund(ctx, principal, args.payment, body))

    return _run_as_staff(settings, args.staff, action)


def _cmd_credit(args: argparse.Namespace, settings: Settings) -> int:
    """R2: an account credit, spent on the next charges before the card."""
    from app.credits.schemas import CreditCreate, to_api
    from app.credits.service import grant_credit

    body = CreditCreate(amount=args.amount, currency=args.currency, reason=args.reason)

    async def action(ctx, principal):  # noqa: ANN001, ANN202
        async with ctx.db.transaction() as conn:
            return to_api(await grant_credit(conn, ctx, principal, args.customer, body))

    return _run_as_staff(settings, args.staff, action)


def _cmd_standing(args: argparse.Namespace, settings: Settings) -> int:
    """R3: suspend, lift a suspension, or terminate an account."""
    from app.customers import standing
    from app.customers.schemas import StandingChange, to_api

    body = StandingChange(reason=args.reason)
    change = getattr(standing, args.command)

    async def action(ctx, principal):  # noqa: ANN001, ANN202
        async with ctx.db.transaction() as conn:
            return to_api(await change(conn, ctx, principal, args.customer, body.reason))

    return _run_as_staff(settings, args.staff, action)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="billing", description="Subscription billing service")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("migrate", help="bring the configured database to the newest schema")
    p.add_argument("--revision", default="head")
    p.set_defaults(func=_cmd_migrate)
    p = sub.add_parser("serve", help="run the API with its scheduler")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=_cmd_serve)
    p = sub.add_parser("scheduler", help="run only the scheduled jobs")
    p.set_defaults(func=_cmd_scheduler)
    p = sub.add_parser("token", help="mint a bearer token signed with BILLING_AUTH_SECRET")
    p.add_argument("--sub", required=True, help="customer external id, or staff id for ops")
    p.add_argument("--role", choices=["customer", "ops"], required=True)
    p.add_argument("--hours", type=float, default=24.0)
    p.set_defaults(func=_cmd_token)
    p = sub.add_parser("replay-events", help="apply Stripe events missed during an outage (safe to repeat)")
    p.add_argument("--since", required=True, help="RFC 3339 time, e.g. 2026-11-29T10:00:00Z")
    p.set_defaults(func=_cmd_replay_events)
    p = sub.add_parser("refund", help="refund part or all of a payment (ops, with a reason)")
    p.add_argument("--payment", required=True)
    p.add_argument("--amount", type=int, required=True, help="minor units")
    p.add_argument("--reason", required=True)
    p.add_argument("--staff", required=True, help="your staff id, recorded in the audit log")
    p.set_defaults(func=_cmd_refund)
    p = sub.add_parser("credit", help="grant an account credit (ops, with a reason)")
    p.add_argument("--customer", required=True)
    p.add_argument("--amount", type=int, required=True, help="minor units")
    p.add_argument("--currency", required=True)
    p.add_argument("--reason", required=True)
    p.add_argument("--staff", required=True)
    p.set_defaults(func=_cmd_credit)
    for name, text in (("suspend", "suspend an account"), ("unsuspend", "lift a suspension"),
                       ("terminate", "terminate an account: ends everything, refunds nothing")):
        p = sub.add_parser(name, help=f"{text} (ops, with a reason)")
        p.add_argument("--customer", required=True)
        p.add_argument("--reason", required=True)
        p.add_argument("--staff", required=True)
        p.set_defaults(func=_cmd_standing)
    args = parser.parse_args(argv)
    try:
        return args.func(args, Settings())
    except ValidationError as exc:
        for err in exc.errors():
            print(f"invalid {'.'.join(map(str, err['loc'])) or 'input'}: {err['msg']}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
