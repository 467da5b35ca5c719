"""The `billing` console command: migrate, serve, scheduler, token, demo, the ops actions and
console-sessions.

First-run mistakes (no schema yet, a missing secret, a port in use) end in one line that says what to do, not a
traceback."""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import errno
import gc
import shlex
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from app.config import Settings

if TYPE_CHECKING:  # imported where used: the command starts without loading the whole service
    from alembic.config import Config

    from app.auth import Principal
    from app.context import AppContext

# An ops action run as a staff member: the result as the API shows it.
StaffAction = Callable[["AppContext", "Principal"], Awaitable[dict[str, Any]]]


def alembic_config(database_url: str) -> Config:
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


REQUEST_GRACE_SECONDS = 20  # on SIGTERM, `billing serve` gives requests in flight this long (uvicorn)


class StartupError(Exception):
    """A problem the person starting the service can fix; its message says how, in one line."""


def schema_problem(database_url: str) -> str | None:
    """Why the database cannot serve yet (no schema, an older one, unreachable), or None when it is at head."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.db import async_url

    url = make_url(database_url)
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return f"there is no database at {url.database} yet: run `billing migrate` first"

    async def current() -> str | None:
        engine = create_async_engine(async_url(database_url))
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
        finally:
            await engine.dispose()

    try:
        revision = asyncio.run(current())
    except (OSError, Exception) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"cannot reach the database {url.render_as_string(hide_password=True)}: {reason}"
    if revision is None:
        return "the database has no schema yet: run `billing migrate` first"
    if revision != head:
        return f"the database schema is at {revision}, this version needs {head}: run `billing migrate` first"
    return None


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"{host}:{port} is already in use (another `billing serve`?): stop it, or "
                    f"choose another port with --port"
                ) from None
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def command_name() -> str:
    """How the person who started this process runs `billing` (for the hints printed at start-up)."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if program is None or program.suffix == ".py" or program.name == "__main__.py":
        return f"{shlex.quote(sys.executable)} -m app.cli"
    if program.name == "billing" and program.parent != Path("."):
        try:
            return shlex.quote(str(program.resolve().relative_to(Path.cwd())))
        except ValueError:
            return shlex.quote(str(program))
    return "billing"


def startup_banner(settings: Settings, host: str, port: int) -> str:
    """What a person at a terminal needs after `billing serve`: where everything is, and how to get a token."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}"
    billing = command_name()
    mode = (
        "sandbox: payments go through the built-in sandbox gateway, and the sandbox clock stands still "
        "until you move it (POST /v1/sandbox/clock)"
        if settings.sandbox
        else "live: payments go through Stripe"
    )
    lines = [
        f"Billing is starting ({mode}).",
        f"  API        {base}/v1/plans",
        f"  API docs   {base}/docs",
        f"  Console    {base}/ops",
        f"  Health     {base}/healthz",
        "Tokens for the API and the console:",
        f"  {billing} token --sub ops-1 --role ops",
        f"  {billing} token --sub user-1 --role customer",
        "Stop with Ctrl-C.",
    ]
    return "\n".join(lines)


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    migrate(settings.database_url, args.revision)
    print(f"database at {args.revision}", file=sys.stderr)
    return 0


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn
    from uvicorn.server import STARTUP_FAILURE

    from app.main import create_app

    try:
        settings.check_production()
    except RuntimeError as exc:
        raise StartupError(f"{exc} (for example: export BILLING_AUTH_SECRET=$(openssl rand -hex 32))") from None
    problem = schema_problem(settings.database_url)
    if problem:
        raise StartupError(problem)
    _check_port(args.host, args.port)
    if sys.stderr.isatty():
        print(startup_banner(settings, args.host, args.port), file=sys.stderr)
    app = create_app(settings)
    # What start-up built (modules, routes, compiled statements) lives as long as the process: moved out of the
    # garbage collector's generations, so its full collections no longer walk it (they showed as latency spikes).
    gc.collect()
    gc.freeze()
    shutdown = app.state.ctx.shutdown

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # The scheduler claims nothing new from the signal on, while requests drain; a second signal (Ctrl-C
            # twice) ends its grace period at once, as it ends uvicorn's.
            shutdown.on_signal()
            super().handle_exit(sig, frame)

    # Graceful stop: on SIGTERM/SIGINT uvicorn stops accepting connections and gives the requests in flight up to
    # REQUEST_GRACE_SECONDS; meanwhile (from the same signal) the scheduler's running batch has up to
    # BILLING_SHUTDOWN_GRACE_SECONDS to finish; then the lifespan closes the gateway and the database.
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        timeout_graceful_shutdown=REQUEST_GRACE_SECONDS,
        proxy_headers=True,
    )
    server = Server(config)
    # uvicorn raises the signal that stopped it again once it has stopped, to the handler it found: this one, so
    # that a clean stop ends with status 0 (the default handler would end the process by the signal instead).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _sig, _frame: None)
    server.run()
    return 0 if server.started else STARTUP_FAILURE  # as uvicorn.run


def _cmd_scheduler(args: argparse.Namespace, settings: Settings) -> int:
    """Run the scheduled jobs alone, for deployments that separate the API from the scheduler."""
    from app.health.observability import configure_logging
    from app.main import build_context
    from app.scheduler.runner import start_scheduler

    configure_logging(settings.log_level, settings.log_format)
    ctx = build_context(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            ctx.shutdown.on_signal()
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        scheduler = start_scheduler(ctx)
        await stop.wait()
        await scheduler.stop()  # the running batch finishes (bounded by BILLING_SHUTDOWN_GRACE_SECONDS)
        await ctx.gateway.aclose()
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
    from app.gateways.stripe import StripeGateway
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
    gateway = ctx.gateway
    assert isinstance(gateway, StripeGateway)  # settings.gateway is "stripe"

    async def main() -> dict[str, int]:
        counts: dict[str, int] = {}
        try:
            async for event in gateway.events_since(int(since.timestamp())):
                try:  # held to the webhook's rules: one that can never be processed is counted and skipped
                    _duplicate, outcome = await handle_event(ctx, parse_event(event))
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


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Play one customer's life (trial, notice, expiry, purchase, renewal, cancellation, end) against a running
    sandbox service, printing the timeline as it goes."""
    from app.sandbox.demo import DemoError, format_event, play

    print(f"A customer's life against {args.url}, on the sandbox clock (it moves forward as the story needs):")
    try:
        play(args.url, settings.auth_secret, args.plan, show=lambda event: print(format_event(event), flush=True))
    except DemoError as exc:
        print(f"billing: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_as_staff(settings: Settings, staff: str, action: StaffAction) -> int:
    """Run one ops action through the same service functions as the API, as staff member `staff`."""
    import json

    from app.auth import Principal
    from app.errors import DomainError
    from app.http import dumps
    from app.main import build_context

    ctx = build_context(settings)
    principal = Principal(sub=staff, role="ops")

    async def main() -> dict[str, Any]:
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

    async def action(ctx: AppContext, principal: Principal) -> dict[str, Any]:
        return to_api(await create_refund(ctx, principal, args.payment, body))

    return _run_as_staff(settings, args.staff, action)


def _cmd_credit(args: argparse.Namespace, settings: Settings) -> int:
    """R2: an account credit, spent on the next charges before the card."""
    from app.credits.schemas import CreditCreate, to_api
    from app.credits.service import grant_credit
    from app.uow import unit_of_work

    body = CreditCreate(amount=args.amount, currency=args.currency, reason=args.reason)

    async def action(ctx: AppContext, principal: Principal) -> dict[str, Any]:
        async with unit_of_work(ctx) as uow:
            return to_api(await grant_credit(uow, principal, args.customer, body))

    return _run_as_staff(settings, args.staff, action)


def _cmd_standing(args: argparse.Namespace, settings: Settings) -> int:
    """R3: suspend, lift a suspension, or terminate an account."""
    from app.customers import standing
    from app.customers.schemas import StandingChange, to_api
    from app.uow import unit_of_work

    body = StandingChange(reason=args.reason)
    change = getattr(standing, args.command)

    async def action(ctx: AppContext, principal: Principal) -> dict[str, Any]:
        async with unit_of_work(ctx) as uow:
            return to_api(await change(uow, principal, args.customer, body.reason))

    return _run_as_staff(settings, args.staff, action)


def _cmd_console_sessions(args: argparse.Namespace, settings: Settings) -> int:
    """End every ops console session of one staff member (a lost laptop, someone leaving): signed out at once."""
    from app.console.sessions import revoke_staff
    from app.main import build_context

    ctx = build_context(settings)

    async def main() -> int:
        try:
            return await revoke_staff(ctx, args.staff)
        finally:
            await ctx.gateway.aclose()
            await ctx.db.dispose()

    ended = asyncio.run(main())
    print(f"revoked {ended} console session{'' if ended == 1 else 's'} of {args.staff}")
    return 0


STAFF_HELP = "your staff id, recorded as the actor in the audit log"
REASON_HELP = "why (mandatory, recorded in the audit log)"


def parser() -> argparse.ArgumentParser:
    """Every command and option, each described with its default (`billing COMMAND --help`)."""
    formatter = argparse.ArgumentDefaultsHelpFormatter
    top = argparse.ArgumentParser(
        prog="billing",
        formatter_class=formatter,
        description="Subscription billing service. Settings come from BILLING_* environment variables "
        "(database, secrets, Stripe, SMTP); see docs/operations.md.",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, formatter_class=formatter)

    p = command("migrate", "bring the configured database (BILLING_DATABASE_URL) to a schema revision")
    p.add_argument("--revision", default="head", help="the Alembic revision to upgrade to; head is the newest")
    p.set_defaults(func=_cmd_migrate)
    p = command("serve", "run the API, the ops console and the scheduled jobs")
    p.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on; 0.0.0.0 for every interface (in a container)"
    )
    p.add_argument("--port", type=int, default=8000, help="the TCP port to listen on")
    p.set_defaults(func=_cmd_serve)
    p = command("scheduler", "run only the scheduled jobs, for deployments that separate them from the API")
    p.set_defaults(func=_cmd_scheduler)
    p = command("token", "mint a bearer token signed with BILLING_AUTH_SECRET")
    p.add_argument("--sub", required=True, help="the customer's external id, or the staff id for ops")
    p.add_argument("--role", choices=["customer", "ops"], required=True, help="what the token may do")
    p.add_argument("--hours", type=float, default=24.0, help="how long the token is valid")
    p.set_defaults(func=_cmd_token)
    p = command("demo", "play a customer's life (trial to end) against a running sandbox service; moves its clock")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the running service")
    p.add_argument("--plan", default="basic-monthly", help="the plan the customer tries and buys")
    p.set_defaults(func=_cmd_demo)
    p = command("replay-events", "apply the Stripe events missed during an outage (safe to repeat)")
    p.add_argument("--since", required=True, help="RFC 3339 time with a zone, e.g. 2026-11-29T10:00:00Z")
    p.set_defaults(func=_cmd_replay_events)
    p = command("refund", "refund part or all of a payment, at the company's discretion (R2)")
    p.add_argument("--payment", required=True, help="the payment's id (pay_...)")
    p.add_argument("--amount", type=int, required=True, help="in the currency's minor unit (cents)")
    p.add_argument("--reason", required=True, help=REASON_HELP)
    p.add_argument("--staff", required=True, help=STAFF_HELP)
    p.set_defaults(func=_cmd_refund)
    p = command("credit", "grant an account credit, spent on the next charges before the card (R2)")
    p.add_argument("--customer", required=True, help="the customer's id (cus_...)")
    p.add_argument("--amount", type=int, required=True, help="in the currency's minor unit (cents)")
    p.add_argument("--currency", required=True, help="lowercase ISO 4217 code, e.g. usd")
    p.add_argument("--reason", required=True, help=REASON_HELP)
    p.add_argument("--staff", required=True, help=STAFF_HELP)
    p.set_defaults(func=_cmd_credit)
    for name, text in (
        ("suspend", "suspend an account: no access until lifted, nothing refunded (R3)"),
        ("unsuspend", "lift a suspension (R3)"),
        ("terminate", "terminate an account: ends everything at once, refunds nothing (R3)"),
    ):
        p = command(name, text)
        p.add_argument("--customer", required=True, help="the customer's id (cus_...)")
        p.add_argument("--reason", required=True, help=REASON_HELP)
        p.add_argument("--staff", required=True, help=STAFF_HELP)
        p.set_defaults(func=_cmd_standing)
    p = command("console-sessions", "manage ops console sessions")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser(
        "revoke",
        help="sign a staff member out of the ops console everywhere",
        description="sign a staff member out of the ops console everywhere",
        formatter_class=formatter,
    )
    p.add_argument("--staff", required=True, help="the staff id (the `sub` of the token they signed in with)")
    p.set_defaults(func=_cmd_console_sessions)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args, Settings())
    except ValidationError as exc:
        for err in exc.errors():
            print(f"billing: invalid {'.'.join(map(str, err['loc'])) or 'setting'}: {err['msg']}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"billing: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
