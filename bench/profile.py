#!/usr/bin/env python3
"""Where the time goes, for one benchmarked path. Not part of run.py's figures: a diagnostic tool.

    .venv/bin/python bench/profile.py read|write|webhooks [--seconds 20] [--connections 8]
    .venv/bin/python bench/profile.py renewals [--count 1000]
    .venv/bin/python bench/profile.py sweep [--total 10000]

HTTP paths: the service runs as in run.py (`billing serve`), wrk drives it, and py-spy samples the service
process (`--gil`: only while a thread holds the GIL, i.e. Python CPU, not waiting) for the whole run. Printed:
CPU ms and database transactions per request, self time by package, the hottest functions and the service's own
functions (inclusive). Note that SQLAlchemy's async layer runs statements inside greenlets, whose stacks py-spy
shows without the calling app frames: app functions' inclusive shares miss most of their SQL execution time.

Scheduled work: the jobs run in-process, timed by wall clock and CPU, with every SQL statement and transaction
counted (SQLAlchemy events), and pyinstrument's wall-clock profile (awaits included) printed.

py-spy and pyinstrument come from PyPI:  .venv/bin/pip install --require-hashes -r requirements/bench.txt
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # no __pycache__ left in bench/
sys.path.insert(0, str(BENCH))

import run  # noqa: E402  (bench/run.py: databases, servers, wrk, seeding)


def summarise_pyspy(raw: Path, top: int = 25) -> str:
    """Self time by package, hottest functions (self), and the service's functions (inclusive)."""
    by_package: collections.Counter = collections.Counter()
    by_self: collections.Counter = collections.Counter()
    app_inclusive: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        leaf = frames[-1]
        match = re.search(r"\((.*?):\d+\)$", leaf)
        path = match.group(1) if match else leaf
        by_package[path.split("/")[0] if "/" in path else path] += n
        by_self[re.sub(r":\d+\)$", ")", leaf)] += n
        seen = set()
        for frame in frames:
            if "(app/" in frame or "(policies/" in frame:
                key = re.sub(r":\d+\)$", ")", frame)
                if key not in seen:
                    seen.add(key)
                    app_inclusive[key] += n
    out = [f"samples: {total}", "", "self time by package:"]
    out += [f"  {100 * v / total:5.1f}%  {k}" for k, v in by_package.most_common(12)]
    out += ["", "hottest functions (self):"]
    out += [f"  {100 * v / total:5.1f}%  {k}" for k, v in by_self.most_common(top)]
    out += ["", "service functions (inclusive):"]
    out += [f"  {100 * v / total:5.1f}%  {k}" for k, v in app_inclusive.most_common(top)]
    return "\n".join(out)


def xact_commits(dbs: run.Databases, database: str) -> int:
    with dbs.admin.cursor() as cur:
        cur.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (database,))
        return int(cur.fetchone()[0])


def profile_http(args: argparse.Namespace) -> None:
    from seed import incomplete_purchases

    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        run.fail("py-spy is missing: .venv/bin/pip install --require-hashes -r requirements/bench.txt")
    dbs = run.Databases(args.database_url, keep=False)
    workdir = Path(tempfile.mkdtemp(prefix="billing-profile-"))
    service = None
    try:
        template = dbs.create("template")
        run.migrate(dbs.service_url(template))
        api_db = dbs.create("api", template)
        conn = dbs.connect(api_db)
        now = run.seed_api_database(conn, 1000)
        service = run.start_service(dbs.service_url(api_db), workdir)
        tokens = run.mint_tokens(1000, run.API_PREFIX)
        pool = workdir / "pool.tsv"
        pool.write_text("".join(f"sub_{run.API_PREFIX}_{i:08d}\t{tokens[i - 1]}\n" for i in range(1, 1001)))
        if args.path == "read":
            script, script_args = "read.lua", [str(pool)]
        elif args.path == "write":
            script, script_args = "write.lua", [str(pool), "profile"]
        else:
            intents = incomplete_purchases(conn, "whp", args.events, now, now, run.policy_version(now))
            events = workdir / "events.tsv"
            events.write_text("".join(run.signed_events(intents, "whp")))
            script, script_args = "webhook.lua", [str(events)]
        if args.path != "webhooks":
            run.wrk_on(service, "read.lua", args.connections, 2, str(pool))  # warm-up
        raw = workdir / "profile.raw"
        commits_before = xact_commits(dbs, api_db)
        spy = subprocess.Popen(
            [py_spy, "record", "--gil", "-r", "250", "-f", "raw", "-o", str(raw), "-p", str(service.process.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1)
        result = run.wrk_on(service, script, args.connections, args.seconds, *script_args)
        spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
        spy.wait(timeout=60)
        commits = xact_commits(dbs, api_db) - commits_before
        conn.close()
        print(
            f"# {args.path}: {result.rps:.0f} req/s at {args.connections} connections, p99 {result.p99_ms:.1f} ms, "
            f"errors {result.errors}, load average {run.loadavg()}"
        )
        print(
            f"# service CPU {result.cpu_ms_per_request:.2f} ms per request; "
            f"{commits / max(1, result.requests):.1f} database transactions per request"
        )
        if raw.exists():
            print(summarise_pyspy(raw))
        else:
            print(f"py-spy wrote nothing: {spy.stderr.read().decode()[-2000:]}")
    finally:
        if service is not None:
            service.stop()
        dbs.drop_all()
        shutil.rmtree(workdir, ignore_errors=True)


class StatementCounter:
    """Counts SQL statements (of both engines) and transactions (of the transactional engine: the autocommit one
    begins no transaction on the server) of an app's `Database`, with time in the driver (SQLAlchemy events)."""

    def __init__(self, engine, autocommit_engine) -> None:
        from sqlalchemy import event

        self.statements: collections.Counter = collections.Counter()
        self.seconds: collections.Counter = collections.Counter()
        self.begins = 0
        for sync in (engine.sync_engine, autocommit_engine.sync_engine):

            @event.listens_for(sync, "before_cursor_execute")
            def _before(conn, cursor, statement, parameters, context, executemany):
                conn.info["bench_t0"] = time.perf_counter()

            @event.listens_for(sync, "after_cursor_execute")
            def _after(conn, cursor, statement, parameters, context, executemany):
                key = " ".join(statement.split())[:70]
                self.statements[key] += 1
                self.seconds[key] += time.perf_counter() - conn.info.pop("bench_t0", time.perf_counter())

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn):
            self.begins += 1

    def report(self, per: int, unit: str) -> str:
        total = sum(self.statements.values())
        out = [
            f"{total / per:.1f} SQL statements and {self.begins / per:.2f} transactions per {unit}",
            f"statements (count per unit, driver time share, seconds in all; {sum(self.seconds.values()):.2f} s):",
        ]
        all_time = sum(self.seconds.values()) or 1
        for key, count in self.statements.most_common(20):
            out.append(
                f"  {count / per:6.2f}  {100 * self.seconds[key] / all_time:5.1f}%  {self.seconds[key]:6.2f}  {key}"
            )
        return "\n".join(out)


def profile_inproc(args: argparse.Namespace) -> None:
    import inproc
    from pyinstrument import Profiler
    from seed import active_subscriptions, base_rows, customers, restore_due_trials, sweep_table

    dbs = run.Databases(args.database_url, keep=False)
    try:
        template = dbs.create("template")
        run.migrate(dbs.service_url(template))
        name = dbs.create(args.path, template)
        conn = dbs.connect(name)
        base_rows(conn, run.NOW)
        if args.path == "renewals":
            customers(conn, "r", args.count, run.NOW)
            active_subscriptions(conn, "r", args.count, run._anchor_for(run.NOW), run.policy_version())
            per, unit = args.count, "renewal"
        else:
            sweep_table(conn, args.total, 1000, run.NOW, run.policy_version())
            per, unit = 1, "sweep of 1,000 due trials"
        runner = inproc.Runner(dbs.service_url(name), run.AUTH_SECRET)
        if args.path == "sweep":  # one unprofiled sweep first, as run.py's warm-up
            inproc.timed_sweep(runner, run.NOW)
            restore_due_trials(conn, 1000)
        counter = StatementCounter(runner.ctx.db.engine, runner.ctx.db.autocommit_engine)
        profiler = Profiler(interval=0.002, async_mode="enabled")
        cpu0, wall0 = time.process_time(), time.perf_counter()
        profiler.start()
        if args.path == "renewals":
            _, done, per_job = inproc.timed_run_due(runner, run.NOW)
        else:
            _, done = inproc.timed_sweep(runner, run.NOW)
            per_job = {}
        profiler.stop()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        runner.close()
        conn.close()
        print(
            f"# {args.path}: {done}; wall {wall:.2f} s, this process's CPU {cpu:.2f} s "
            f"({1000 * wall / per:.2f} ms wall and {1000 * cpu / per:.2f} ms CPU per {unit.split(' of ')[0]}); "
            f"load average {run.loadavg()}"
        )
        if per_job:
            print("# seconds per job: " + ", ".join(f"{k} {v:.2f}" for k, v in per_job.items() if v > 0.01))
        print(counter.report(per, unit))
        print(profiler.output_text(unicode=False, color=False, show_all=False))
        flat = profiler.output_text(unicode=False, color=False, flat=True).splitlines()
        print("\n".join(["functions by self time (pyinstrument, wall clock):", *flat[:40]]))
    finally:
        dbs.drop_all()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", choices=["read", "write", "webhooks", "renewals", "sweep"])
    parser.add_argument("--database-url", default=run.DEFAULT_URL)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--events", type=int, default=4000, help="webhooks: events prepared")
    parser.add_argument("--count", type=int, default=1000, help="renewals: subscriptions due")
    parser.add_argument("--total", type=int, default=10_000, help="sweep: trials in the table (1,000 due)")
    args = parser.parse_args()
    run.preflight()
    if args.path in ("read", "write", "webhooks"):
        profile_http(args)
    else:
        profile_inproc(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
