#!/usr/bin/env python3
"""Benchmarks of the billing service (issue #8). See bench/README.md.

    .venv/bin/python bench/run.py [--quick] [--database-url postgresql://postgres@127.0.0.1:5432/postgres]
    .venv/bin/python bench/run.py --compare <rev-a> <rev-b> [--quick] [--repeat 2]   # see bench/compare.py

Creates fresh PostgreSQL databases on the server of --database-url (and drops them at the end), runs the service as
production does (`billing serve`: uvicorn, one worker) next to a bare FastAPI app (bench/bare_app.py), drives both
with wrk, runs the scheduled work in-process, and prints one `name: value` line per figure on stdout (comment lines
start with `#`; progress goes to stderr).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

BENCH = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # no __pycache__ left in bench/
ROOT = BENCH.parent
# This tree's code, not whatever the virtualenv has installed (an editable install may point at another checkout):
# here, and in every process started (`clean_env`).
sys.path.insert(0, str(ROOT))

from tests.support import processes  # noqa: E402 - found through the line above (stdlib only, see the module)
from tests.support.processes import ServerProcess  # noqa: E402 - the same

WRK_DIR = BENCH / "wrk"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
AUTH_SECRET = "bench-auth-secret-0123456789abcdef-0123456789"  # BILLING_AUTH_SECRET of the run (HS256: >= 32 bytes)
WEBHOOK_SECRET = "whsec_bench_0123456789abcdef"  # BILLING_STRIPE_WEBHOOK_SECRET of the service
# Business time of every benchmark database (the sandbox clock, frozen): fixed so runs are comparable.
NOW = _dt.datetime(2027, 2, 10, 12, 0, tzinfo=_dt.UTC)
STARTED = time.monotonic()

TARGETS = {  # figure: (comparison, target)
    "api_read_ratio": (">=", 0.30),
    "api_read_service_p99_ms_c8": ("<=", 60.0),
    "api_write_ratio": (">=", 0.12),
    "sweep_scaling": ("<=", 2.0),
    "renewals_per_s": (">=", 1500.0),
    "webhook_events_per_s": (">=", 250.0),
    "rss_mb": ("<=", 250.0),
}


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"bench: error: {message}", file=sys.stderr)
    raise SystemExit(code)


# --------------------------------------------------------------------------------------------------- pre-flight


def preflight() -> None:
    if shutil.which("wrk") is None:
        fail(
            "wrk is not installed; it is the load generator of these benchmarks. Install it from Debian's "
            "packages:\n    apt-get update && apt-get install -y wrk"
        )
    try:
        import psycopg  # noqa: F401 - only whether it imports

        import app.main  # noqa: F401 - only whether it imports
    except ImportError as exc:
        fail(
            f"cannot import the service or psycopg ({exc}); run with the project's virtualenv, e.g.\n"
            f"    .venv/bin/python bench/run.py"
        )


@dataclass
class Mode:
    quick: bool
    duration: int  # seconds per wrk run of the webhook benchmark
    warmup: int
    rounds: int  # interleaved (bare, service) rounds per concurrency
    api_seconds: int  # seconds per wrk run of a round
    concurrencies: tuple[int, ...]
    api_pool: int
    webhook_rounds: int
    webhook_connections: int
    renewals: int
    sweep_reps: int
    sweep_sizes: tuple[int, int] = (10_000, 1_000_000)
    change_every: int = 5  # C3: every 5th renewing subscription (20 %) carries a pending period-end plan change
    sweep_due: int = 1_000

    @classmethod
    def make(cls, quick: bool) -> Mode:
        if quick:
            return cls(
                quick=True,
                duration=3,
                warmup=2,
                rounds=3,
                api_seconds=3,
                concurrencies=(32, 8),
                api_pool=1000,
                webhook_rounds=1,
                webhook_connections=8,
                renewals=1_000,
                sweep_reps=5,
            )
        # Many short rounds rather than a few long ones: this machine's speed drifts over seconds to minutes, and
        # the closer in time a bare run and its service run are, the less that drift weighs on their ratio.
        return cls(
            quick=False,
            duration=10,
            warmup=3,
            rounds=12,
            api_seconds=4,
            concurrencies=(32, 8),
            api_pool=1000,
            webhook_rounds=3,
            webhook_connections=8,
            renewals=10_000,
            sweep_reps=5,
        )


# --------------------------------------------------------------------------------------------------- databases


class Databases:
    """Fresh databases on the server of `url`: a migrated template, cloned once per benchmark part."""

    def __init__(self, url: str, keep: bool) -> None:
        import psycopg
        from sqlalchemy.engine import make_url

        self.url = make_url(url)
        if self.url.get_backend_name() != "postgresql":
            fail("--database-url must be a PostgreSQL URL")
        self.keep = keep
        self.prefix = f"billing_bench_{os.getpid()}"
        self.created: list[str] = []
        self.admin = psycopg.connect(self.sync_url(self.url.database or "postgres"), autocommit=True)

    def sync_url(self, database: str) -> str:
        return self.url.set(drivername="postgresql", database=database).render_as_string(hide_password=False)

    def service_url(self, database: str) -> str:
        return self.url.set(drivername="postgresql", database=database).render_as_string(hide_password=False)

    def create(self, suffix: str, template: str | None = None) -> str:
        name = f"{self.prefix}_{suffix}"
        with self.admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        self.created.append(name)
        return name

    def connect(self, database: str):
        import psycopg

        return psycopg.connect(self.sync_url(database))

    def drop_all(self) -> None:
        if self.keep:
            log(f"kept databases: {', '.join(self.created)}")
            return
        with self.admin.cursor() as cur:
            for name in reversed(self.created):
                try:
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                except Exception as exc:
                    log(f"could not drop {name}: {exc}")
        self.admin.close()


def migrate(url: str) -> None:
    env = clean_env(BILLING_DATABASE_URL=url)
    result = subprocess.run(billing_cmd("migrate"), env=env, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        fail(f"billing migrate failed:\n{result.stderr[-3000:]}")


def policy_version(at: _dt.datetime = NOW) -> str:
    from policies import load_policy_book

    return load_policy_book(None).at(at).version


def seed_api_database(conn, count: int) -> _dt.datetime:
    """The HTTP benchmarks' data: `count` customers, each with an active subscription in its sixth day. The service
    runs on real time there, as in production (see `start_service`), so the rows are dated from the real time,
    which is returned."""
    from seed import active_subscriptions, base_rows, customers

    from app.clock import SystemClock

    now = SystemClock.wall()
    base_rows(conn, now)
    customers(conn, API_PREFIX, count, now)
    active_subscriptions(conn, API_PREFIX, count, now - _dt.timedelta(days=5), policy_version(now))
    return now


# --------------------------------------------------------------------------------------------------- processes


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def billing_cmd(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("billing")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "app.cli", *args]


Server = ServerProcess  # the service or the bare app (tests/support/processes.py, shared with the tests)


def start_server(name: str, cmd: list[str], env: dict[str, str], workdir: Path, cwd: Path = ROOT) -> Server:
    """`cmd --host 127.0.0.1 --port <free port>`, up once it answers /healthz; its stderr in `workdir`."""
    try:
        return processes.start_server(cmd, env, name=name, cwd=cwd, log_path=workdir / f"{name}.stderr", seconds=60)
    except RuntimeError as exc:
        fail(str(exc))


def alive(server: Server) -> None:
    if server.exited():
        fail(f"{server.name} exited ({server.process.returncode}):\n{server.log_tail()}")


def start_service(database_url: str, workdir: Path, cmd: list[str] | None = None) -> Server:
    """The service as production runs it: real time (the sandbox off, so no sandbox clock is read from the
    database), with the sandbox gateway in place of Stripe, which the benchmark cannot reach."""
    env = clean_env(
        BILLING_DATABASE_URL=database_url,
        BILLING_AUTH_SECRET=AUTH_SECRET,
        BILLING_SANDBOX="false",
        BILLING_GATEWAY="sandbox",
        BILLING_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        BILLING_SCHEDULER_ENABLED="false",
        BILLING_LOG_LEVEL="WARNING",
        BILLING_RATE_LIMIT_WRITES_PER_MINUTE="0",
    )
    return start_server("service", cmd or billing_cmd("serve"), env, workdir)


def start_bare(bodies: Path, workdir: Path) -> Server:
    return start_server(
        "bare", [sys.executable, str(BENCH / "bare_app.py"), "--bodies", str(bodies)], clean_env(), workdir
    )


def http(method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --------------------------------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int
    seconds: float
    errors: int  # socket errors and non-2xx/3xx answers
    p50_ms: float
    p99_ms: float
    raw: dict = field(repr=False)
    cpu_s: float = 0.0  # CPU time the server process used during the run

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_s / max(1, self.requests)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def wrk_on(server: Server, script: str, connections: int, seconds: int, *args: str) -> WrkResult:
    """wrk against `server`, with the CPU time the server used meanwhile."""
    before = server.cpu_seconds()
    result = wrk(server.url, script, connections, seconds, *args)
    result.cpu_s = server.cpu_seconds() - before
    alive(server)
    return result


def wrk(url: str, script: str, connections: int, seconds: int, *args: str) -> WrkResult:
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_DIR / script),
        url,
        "--",
        *args,
    ]
    env = dict(os.environ, BENCH_REPORT_LUA=str(WRK_DIR / "report.lua"))
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 120)
    line = next((x for x in result.stdout.splitlines() if x.startswith("BENCHJSON ")), None)
    if result.returncode != 0 or line is None:
        fail(f"wrk failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    raw = json.loads(line[len("BENCHJSON ") :])
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return WrkResult(raw["requests"], raw["duration_us"] / 1e6, errors, raw["p50_us"] / 1000, raw["p99_us"] / 1000, raw)


# --------------------------------------------------------------------------------------------------- figures


class Figures:
    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.comments: list[str] = []

    def add(self, name: str, value: object) -> None:
        self.values[name] = value
        log(f"{name}: {fmt(value)}")

    def comment(self, text: str) -> None:
        self.comments.append(text)

    def print(self) -> None:
        for text in self.comments:
            print(f"# {text}")
        for name, value in self.values.items():
            print(f"{name}: {fmt(value)}")
        for name, (op, target) in TARGETS.items():
            if name not in self.values:
                continue
            value = float(self.values[name])
            met = value >= target if op == ">=" else value <= target
            print(f"# target {name} {op} {fmt(target)}: {fmt(value)} {'met' if met else 'NOT MET'}")
        sys.stdout.flush()


def fmt(value: object) -> str:
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}"
    return str(value)


# --------------------------------------------------------------------------------------------------- API

API_PREFIX = "a"


def mint_tokens(count: int, prefix: str) -> list[str]:
    from app.auth import mint_token
    from app.clock import SystemClock

    wall = SystemClock.wall()
    return [
        mint_token(AUTH_SECRET, f"{prefix}-{i}", "customer", _dt.timedelta(hours=12), wall) for i in range(1, count + 1)
    ]


def api_benchmarks(mode: Mode, dbs: Databases, api_db: str, workdir: Path, figures: Figures, service: Server) -> None:
    from seed import reset_cancellations

    pool = workdir / "pool.tsv"
    tokens = mint_tokens(mode.api_pool, API_PREFIX)
    pool.write_text("".join(f"sub_{API_PREFIX}_{i:08d}\t{tokens[i - 1]}\n" for i in range(1, mode.api_pool + 1)))

    # The bare app answers with bodies of the service's own answers (same size, same shape).
    auth = {"Authorization": f"Bearer {tokens[0]}"}
    status, read_body = http("GET", f"{service.url}/v1/subscriptions/sub_{API_PREFIX}_00000001", auth)
    if status != 200:
        fail(f"GET subscription answered {status}: {read_body[:500]!r}")
    status, write_body = http(
        "POST",
        f"{service.url}/v1/subscriptions/sub_{API_PREFIX}_00000001/cancel",
        {**auth, "Idempotency-Key": "bench-probe"},
    )
    if status != 200:
        fail(f"cancel answered {status}: {write_body[:500]!r}")
    bodies = workdir / "bodies.json"
    bodies.write_text(json.dumps({"read": json.loads(read_body), "write": json.loads(write_body)}))
    bare = start_bare(bodies, workdir)
    try:
        status, bare_read = http("GET", f"{bare.url}/v1/subscriptions/x")
        _, bare_write = http("POST", f"{bare.url}/v1/subscriptions/x/cancel")
        figures.add("api_read_body_bytes", len(read_body))
        figures.add("api_write_body_bytes", len(write_body))
        if (len(bare_read), len(bare_write)) != (len(read_body), len(write_body)):
            fail(f"bare bodies differ in size: {len(bare_read)}/{len(read_body)}, {len(bare_write)}/{len(write_body)}")

        conn = dbs.connect(api_db)
        log("warming up both servers")
        for server in (bare, service):
            wrk_on(server, "read.lua", 32, mode.warmup, str(pool))
            wrk_on(server, "write.lua", 32, mode.warmup, str(pool), f"warm-{server.name}")
        reset_cancellations(conn, API_PREFIX, mode.api_pool)

        counted = ("subscription.cancel_scheduled", "subscription.resumed")

        def audited() -> int:
            from seed import count

            return count(conn, "SELECT count(*) FROM audit_events WHERE action = ANY(%s)", (list(counted),))

        run_id = secrets.token_hex(4)
        for kind, script in (("read", "read.lua"), ("write", "write.lua")):
            errors = 0
            ratios_all: dict[int, list[float]] = {}
            for conns in mode.concurrencies:
                bare_runs, service_runs, ratios = [], [], []
                for rnd in range(mode.rounds):
                    args = [str(pool)]
                    if kind == "write":
                        args.append(f"{run_id}-bare-{conns}-{rnd}")
                    b = wrk_on(bare, script, conns, mode.api_seconds, *args)
                    if kind == "write":
                        time.sleep(0.5)  # requests cut off by wrk's stop finish before the pool is reset
                        reset_cancellations(conn, API_PREFIX, mode.api_pool)
                        before = audited()
                        args = [str(pool), f"{run_id}-svc-{conns}-{rnd}"]
                    s = wrk_on(service, script, conns, mode.api_seconds, *args)
                    if kind == "write":
                        time.sleep(0.5)
                        writes = audited() - before
                        if writes < 0.98 * s.requests:
                            log(f"warning: {s.requests} write requests but only {writes} state changes audited")
                    errors += b.errors + s.errors
                    bare_runs.append(b)
                    service_runs.append(s)
                    ratios.append(s.rps / b.rps)
                    log(
                        f"{kind} c{conns} round {rnd + 1}: bare {b.rps:.0f} req/s (p99 {b.p99_ms:.1f} ms), "
                        f"service {s.rps:.0f} req/s (p99 {s.p99_ms:.1f} ms), ratio {ratios[-1]:.3f}"
                        + (f", errors {b.errors}/{s.errors}" if b.errors or s.errors else "")
                    )
                ratios_all[conns] = ratios
                figures.add(f"api_{kind}_bare_rps_c{conns}", statistics.median(r.rps for r in bare_runs))
                figures.add(f"api_{kind}_service_rps_c{conns}", statistics.median(r.rps for r in service_runs))
                figures.add(f"api_{kind}_bare_p99_ms_c{conns}", statistics.median(r.p99_ms for r in bare_runs))
                figures.add(f"api_{kind}_service_p99_ms_c{conns}", statistics.median(r.p99_ms for r in service_runs))
                figures.add(f"api_{kind}_ratio_c{conns}", statistics.median(ratios))
                # CPU time per request of each server process: far steadier than req/s on a shared machine.
                figures.add(
                    f"api_{kind}_bare_cpu_ms_per_req_c{conns}",
                    statistics.median(r.cpu_ms_per_request for r in bare_runs),
                )
                figures.add(
                    f"api_{kind}_service_cpu_ms_per_req_c{conns}",
                    statistics.median(r.cpu_ms_per_request for r in service_runs),
                )
            # The headline ratio: the lower of the per-concurrency medians (the target must hold at both loads).
            figures.add(f"api_{kind}_ratio", min(statistics.median(r) for r in ratios_all.values()))
            figures.add(f"api_{kind}_errors", errors)
        conn.close()
    finally:
        bare.stop()


# --------------------------------------------------------------------------------------------------- webhooks


def signed_events(intents: list[tuple[str, str]], prefix: str) -> list[str]:
    """One `signature<TAB>payload` line per `payment_intent.succeeded` event, signed as Stripe signs them."""
    try:
        sys.path.insert(0, str(ROOT))
        from tests.support.webhooks import intent_event, signature
    except ImportError:  # the tests' helper is not there: Stripe's scheme, written out
        import hashlib
        import hmac

        def signature(payload: str, secret: str) -> str:
            t = int(time.time())
            return f"t={t},v1={hmac.new(secret.encode(), f'{t}.{payload}'.encode(), hashlib.sha256).hexdigest()}"

        def intent_event(
            event_type: str, intent_id: str, *, event_id: str, amount: int, currency: str, metadata: dict
        ) -> dict:
            return {
                "id": event_id,
                "object": "event",
                "type": event_type,
                "created": int(time.time()),
                "livemode": False,
                "data": {
                    "object": {
                        "id": intent_id,
                        "object": "payment_intent",
                        "status": "succeeded",
                        "amount": amount,
                        "amount_received": amount,
                        "currency": currency,
                        "metadata": metadata,
                    }
                },
            }

    from seed import CURRENCY, PRICE

    lines = []
    for n, (intent, key) in enumerate(intents, start=1):
        event = intent_event(
            "payment_intent.succeeded",
            intent,
            event_id=f"evt_bench_{prefix}_{n:08d}",
            amount=PRICE,
            currency=CURRENCY,
            metadata={"idempotency_key": key},
        )
        payload = json.dumps(event, separators=(",", ":"))
        lines.append(f"{signature(payload, WEBHOOK_SECRET)}\t{payload}\n")
    return lines


def webhook_benchmark(
    mode: Mode, dbs: Databases, api_db: str, workdir: Path, figures: Figures, service: Server
) -> None:
    from seed import count, incomplete_purchases

    from app.clock import SystemClock

    conn = dbs.connect(api_db)
    rates, p99s, cpu, errors = [], [], [], 0
    pool_size = 600 * mode.duration
    attempt = 0
    while len(rates) < mode.webhook_rounds:
        attempt += 1
        if attempt > mode.webhook_rounds + 3:
            fail("webhook benchmark: events kept running out")
        prefix = f"wh{attempt}"
        log(f"webhooks: preparing {pool_size} incomplete purchases and their signed events")
        wall = SystemClock.wall()  # the service runs on real time (`start_service`)
        intents = incomplete_purchases(conn, prefix, pool_size, wall, wall, policy_version(wall))
        events = workdir / f"events-{prefix}.tsv"
        events.write_text("".join(signed_events(intents, prefix)))
        applied_before = count(conn, "SELECT count(*) FROM webhook_events WHERE outcome = 'applied'")
        r = wrk_on(service, "webhook.lua", mode.webhook_connections, mode.duration, str(events))
        time.sleep(0.5)
        applied = count(conn, "SELECT count(*) FROM webhook_events WHERE outcome = 'applied'") - applied_before
        activated = count(
            conn, f"SELECT count(*) FROM subscriptions WHERE id LIKE 'sub_{prefix}_%%' AND status = 'active'"
        )
        if r.raw.get("exhausted"):
            log(f"webhooks: all {pool_size} events sent before the end; retrying with more")
            pool_size *= 4
            continue
        errors += r.errors
        if applied < r.requests - r.errors or activated < applied:
            log(
                f"warning: {r.requests} webhook requests, {applied} events applied, {activated} subscriptions activated"
            )
        rate = min(r.requests - r.errors, applied) / r.seconds
        rates.append(rate)
        p99s.append(r.p99_ms)
        cpu.append(r.cpu_ms_per_request)
        log(
            f"webhooks round {len(rates)}: {rate:.0f} events/s applied ({applied} applied, {activated} activated, "
            f"p99 {r.p99_ms:.1f} ms)"
        )
        pool_size = max(1000, int(2.5 * rate * mode.duration))
    figures.add("webhook_events_per_s", statistics.median(rates))
    figures.add(f"webhook_p99_ms_c{mode.webhook_connections}", statistics.median(p99s))
    figures.add("webhook_service_cpu_ms_per_event", statistics.median(cpu))
    figures.add("webhook_errors", errors)
    conn.close()


# --------------------------------------------------------------------------------------------------- in-process


def renewals_benchmark(mode: Mode, dbs: Databases, template: str, figures: Figures) -> None:
    import inproc
    from seed import CHANGE_PLAN_CODE, active_subscriptions, base_rows, count, customers, pending_plan_changes, vacuum

    name = dbs.create("renewals", template)
    conn = dbs.connect(name)
    n = mode.renewals
    log(f"renewals: {n} active subscriptions due at once")
    base_rows(conn, NOW)
    customers(conn, "r", n, NOW)
    # Period 0 is [anchor, anchor + 1 month) and ended an hour before NOW: each one's renewal is due.
    active_subscriptions(conn, "r", n, _anchor_for(NOW), policy_version())
    # C3 (issue 16): a share of the renewals carries a pending change, applied by the same renewal batch.
    changes = (
        pending_plan_changes(conn, "r", n, mode.change_every, NOW - _dt.timedelta(days=3), policy_version())
        if mode.change_every
        else 0
    )
    log(f"renewals: {changes} of them with a pending plan change at the period end")
    vacuum(conn, "customers", "subscriptions", "payments", "sandbox_charges", "plan_changes")
    runner = inproc.Runner(dbs.service_url(name), AUTH_SECRET)
    try:
        cpu_before = time.process_time()
        elapsed, done, per_job = inproc.timed_run_due(runner, NOW)
        cpu = time.process_time() - cpu_before
    finally:
        runner.close()
    renewed = count(conn, "SELECT count(*) FROM payments WHERE purpose = 'renewal' AND status = 'succeeded'")
    periods = count(conn, "SELECT count(*) FROM subscriptions WHERE period_index = 1 AND status = 'active'")
    receipts = count(conn, "SELECT count(*) FROM notices WHERE type = 'receipt'")
    delivered = count(conn, "SELECT count(*) FROM notices WHERE type = 'receipt' AND status = 'logged'")
    audits = count(conn, "SELECT count(*) FROM audit_events WHERE action = 'subscription.renewed'")
    moved = count(
        conn,
        "SELECT count(*) FROM subscriptions s JOIN payments p ON p.subscription_id = s.id AND p.purpose = 'renewal' "
        "WHERE s.plan_code = %s AND p.price_amount = s.price_amount AND s.anchor_index = 1",
        (CHANGE_PLAN_CODE,),
    )
    conn.close()
    if moved != changes:
        fail(f"renewals: {moved} subscriptions renewed on their new plan, expected {changes}")
    log(f"renewals: run_due {elapsed:.2f} s, {done}; per job {per_job}")
    if not (done.get("subscription_renewals") == renewed == periods == receipts == delivered == audits == n):
        fail(
            f"renewals incomplete: run_due {done}, payments {renewed}, periods {periods}, receipts {receipts} "
            f"({delivered} delivered), audit {audits}, expected {n}"
        )
    if mode.quick:
        figures.comment(f"--quick: renewals_per_s is measured with {n} subscriptions due at once, not 10,000")
    job, delivery = per_job["renew_subscriptions"], per_job["deliver_notices"]
    figures.add("renewals_due", n)
    figures.add("renewals_with_plan_change", changes)
    figures.add("renewals_job_seconds", job)
    figures.add("renewals_deliver_notices_seconds", delivery)
    figures.add("renewals_run_due_seconds", elapsed)
    figures.add("renewals_cpu_ms_per_renewal", 1000 * cpu / n)  # all of run_due, delivery of the receipts included
    figures.add("notices_delivered_per_s", n / delivery)
    figures.add("renewals_run_due_per_s", n / elapsed)
    figures.add("renewals_per_s", n / job)  # the renewal job: everything a renewal writes, the receipt queued


def _anchor_for(now: _dt.datetime) -> _dt.datetime:
    """An anchor whose first monthly period ends one hour before `now` (`now` is on a day <= 28, no clamping)."""
    month = now.month - 1 or 12
    year = now.year if now.month > 1 else now.year - 1
    return now.replace(year=year, month=month) - _dt.timedelta(hours=1)


def sweep_benchmark(mode: Mode, dbs: Databases, template: str, figures: Figures) -> None:
    import inproc
    from seed import base_rows, due_trial_counts, restore_due_trials, sweep_table

    due = mode.sweep_due
    runners, conns = {}, {}
    try:
        for total in mode.sweep_sizes:
            name = dbs.create(f"sweep{total}", template)
            conn = conns[total] = dbs.connect(name)
            log(f"sweep: loading {total} trials, {due} due")
            started = time.monotonic()
            base_rows(conn, NOW)
            second = dbs.connect(name)
            try:
                sweep_table(conn, total, due, NOW, policy_version(), second)
            finally:
                second.close()
            counts = due_trial_counts(conn, NOW)
            log(f"sweep: loaded {total} in {time.monotonic() - started:.1f} s; due (notice, expiry) = {counts}")
            if sum(counts) != due:
                fail(f"sweep table has {counts} due trials, expected {due}")
            runners[total] = inproc.Runner(dbs.service_url(name), AUTH_SECRET)
        expected = {"trial_expiring_notices": due // 2, "trial_expiry": due - due // 2}
        times: dict[int, list[float]] = {total: [] for total in mode.sweep_sizes}
        for rep in range(mode.sweep_reps + 1):  # the first repetition warms caches and is not counted
            for total in mode.sweep_sizes:
                elapsed, done = inproc.timed_sweep(runners[total], NOW)
                if done != expected:
                    fail(f"sweep over {total} trials did {done}, expected {expected}")
                restore_due_trials(conns[total], due)
                if rep:
                    times[total].append(elapsed)
                log(f"sweep {total}: {elapsed * 1000:.0f} ms" + ("" if rep else " (warm-up)"))
        small, large = mode.sweep_sizes
        t_small, t_large = statistics.median(times[small]), statistics.median(times[large])
        figures.add("sweep_10k_seconds", t_small)
        figures.add("sweep_1m_seconds", t_large)
        figures.add("sweep_scaling", t_large / t_small)
    finally:
        for runner in runners.values():
            runner.close()
        for conn in conns.values():
            conn.close()


# --------------------------------------------------------------------------------------------------- main


def machine() -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return f"nproc={os.cpu_count()} cpu={cpu} mem={mem_kb / 1024 / 1024:.1f}GiB python={platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database-url",
        default=DEFAULT_URL,
        help="PostgreSQL server (and maintenance database) on which fresh databases are created",
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs; finishes in under 4 minutes")
    parser.add_argument(
        "--only",
        default="api,webhooks,renewals,sweep",
        help="comma-separated parts to run (api, webhooks, renewals, sweep)",
    )
    parser.add_argument("--keep-databases", action="store_true", help="do not drop the databases at the end")
    parser.add_argument(
        "--change-every",
        type=int,
        default=None,
        help="renewals: every n-th renewing subscription carries a pending plan change (default 5: 20 %%; 0: none)",
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("REV_A", "REV_B"),
        help="measure two git revisions (`.`: this working tree) interleaved in one run, and b's change against a's "
        "(bench/compare.py)",
    )
    parser.add_argument("--repeat", type=int, default=2, help="with --compare: runs per revision and part")
    args = parser.parse_args()
    if args.compare:
        import compare

        parts = [p for p in ("api", "webhooks", "renewals", "sweep") if p in args.only.split(",")]
        options = ["--database-url", args.database_url] + (["--quick"] if args.quick else [])
        return compare.compare(*args.compare, parts, options, args.repeat)
    preflight()
    sys.path.insert(0, str(BENCH))
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    unknown = parts - {"api", "webhooks", "renewals", "sweep"}
    if unknown:
        fail(f"unknown parts: {', '.join(sorted(unknown))}")
    mode = Mode.make(args.quick)
    if args.change_every is not None:
        mode.change_every = args.change_every
    load_at_start = loadavg()
    figures = Figures()
    figures.comment(f"machine: {machine()}")
    figures.comment(
        f"mode: {'quick' if mode.quick else 'full'}; wrk -t1; API: {mode.rounds} interleaved rounds "
        f"(bare, service) of {mode.api_seconds} s per run at {' and '.join(map(str, mode.concurrencies))}"
        f" connections; webhooks: {mode.duration} s per run"
    )
    figures.comment(f"code: {code_version()}")
    import uvicorn

    figures.comment(
        f"uvicorn {uvicorn.__version__}, loop=auto -> "
        f"{'uvloop' if _has('uvloop') else 'asyncio'}, http=auto -> "
        f"{'httptools' if _has('httptools') else 'h11'} (service and bare app alike)"
    )

    dbs = Databases(args.database_url, args.keep_databases)
    workdir = Path(tempfile.mkdtemp(prefix="billing-bench-"))
    service = None
    try:
        log("creating and migrating the template database")
        template = dbs.create("template")
        migrate(dbs.service_url(template))
        if parts & {"api", "webhooks"}:
            api_db = dbs.create("api", template)
            conn = dbs.connect(api_db)
            seed_api_database(conn, mode.api_pool)
            conn.close()
            service = start_service(dbs.service_url(api_db), workdir)
            log(f"service up on {service.url} (pid {service.process.pid})")
            if "api" in parts:
                api_benchmarks(mode, dbs, api_db, workdir, figures, service)
            if "webhooks" in parts:
                webhook_benchmark(mode, dbs, api_db, workdir, figures, service)
            figures.add("rss_mb", service.peak_rss_mb())
            service.stop()
            service = None
        if "renewals" in parts:
            renewals_benchmark(mode, dbs, template, figures)
        if "sweep" in parts:
            sweep_benchmark(mode, dbs, template, figures)
    finally:
        if service is not None:
            service.stop()
        dbs.drop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    figures.comment(f"load average at start {load_at_start}, at end {loadavg()} (other work on the machine shows here)")
    figures.comment(f"total time {time.monotonic() - STARTED:.0f} s")
    figures.print()
    return 0


def code_version() -> str:
    """The commit the service code comes from, and whether app/, policies/ or migrations/ differ from it."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "app", "policies", "migrations"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return f"commit {head or '?'}" + (" with uncommitted changes in app/policies/migrations" if dirty else "")


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    raise SystemExit(main())
