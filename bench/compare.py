"""Two revisions of the service measured in one run of the machine, interleaved (issue #15's constraint: no figure
more than 5 % worse than the same run's figures of the code before the change). See bench/README.md.

    .venv/bin/python bench/run.py --compare <rev-a> <rev-b> [--quick] [--only api,renewals] [--repeat 2]

Each revision is exported with `git archive` into a temporary directory (`.` is this working tree as it is,
uncommitted changes included) and measured by its own bench/run.py, with PYTHONPATH set to that directory so the
service, the migrations and the in-process jobs are that revision's. The parts are interleaved: part by part, a
run of one revision is followed by the same part's run of the other, in the order a b b a a b ... (so a steady drift
of the machine's speed weighs on both alike), `--repeat` times per revision. Each figure is the median of its runs
per revision; printed is a, b and b's difference to a in %, flagged when b is more than 5 % worse.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PARTS = ("api", "webhooks", "renewals", "sweep")
TOLERANCE_PCT = 5.0
_FIGURE = re.compile(r"^([a-z0-9_]+): (-?[0-9.]+)$")

# Which way is better, by the figure's name (checked in this order); figures matching none are only shown.
_INFO = re.compile(r"(body_bytes|renewals_due|_errors)$|_bare_")  # the bare app measures the machine, not the code
_HIGHER = re.compile(r"(_ratio(_c\d+)?|_per_s|_rps_c\d+)$")
_LOWER = re.compile(r"(_ms(_c\d+)?|_ms_per_\w+|_seconds|_scaling|rss_mb)$")


def direction(name: str) -> int:
    """+1 if a higher value is better, -1 if lower is better, 0 if the figure only informs."""
    if _INFO.search(name):
        return 0
    if _HIGHER.search(name):
        return 1
    if _LOWER.search(name):
        return -1
    return 0


def worse_pct(name: str, a: float, b: float) -> float:
    """How much worse b is than a, in % of a (negative: better); 0 for figures without a direction."""
    sign = direction(name)
    if not sign or a == 0:
        return 0.0
    return -sign * 100 * (b - a) / abs(a)


def log(message: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def export(rev: str, into: Path) -> tuple[Path, str]:
    """The tree of `rev` in `into` (or this working tree for `.`), and a label naming the commit."""
    if rev == ".":
        dirty = git("status", "--porcelain", "--", "app", "policies", "migrations", "bench")
        return ROOT, f"working tree at {git('rev-parse', '--short', 'HEAD')}" + (" with changes" if dirty else "")
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    into.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", commit], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise SystemExit(f"bench: error: git archive {rev} failed")
    return into, f"{rev} ({commit[:7]})"


def run_part(tree: Path, part: str, options: list[str], log_file: Path) -> dict[str, float]:
    """One run of `tree`'s own bench/run.py for one part; its figures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env["PYTHONPATH"] = str(tree)
    with open(log_file, "ab") as err:
        result = subprocess.run(
            [sys.executable, str(tree / "bench" / "run.py"), "--only", part, *options],
            cwd=tree,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    if result.returncode != 0:
        tail = log_file.read_text(errors="replace")[-3000:]
        raise SystemExit(f"bench: error: {part} of {tree} failed ({result.returncode}):\n{tail}")
    figures = {}
    for line in result.stdout.splitlines():
        if match := _FIGURE.match(line.strip()):
            figures[match.group(1)] = float(match.group(2))
    return figures


def fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def compare(rev_a: str, rev_b: str, parts: list[str], options: list[str], repeat: int) -> int:
    started = time.monotonic()
    load_at_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    workdir = Path(tempfile.mkdtemp(prefix="billing-compare-"))
    log_file = workdir / "runs.log"
    try:
        trees = {"a": export(rev_a, workdir / "a"), "b": export(rev_b, workdir / "b")}
        for side, (tree, label) in trees.items():
            log(f"{side} = {label}: {tree}")
        # runs[side][figure] = values, one per repetition (a figure two parts print, e.g. rss_mb: the larger)
        runs: dict[str, dict[str, list[float]]] = {"a": defaultdict(list), "b": defaultdict(list)}
        step = 0
        for rep in range(repeat):
            for part in parts:
                order = ("a", "b") if step % 2 == 0 else ("b", "a")
                step += 1
                for side in order:
                    log(f"{part}, run {rep + 1} of {repeat}: {side} ({trees[side][1]})")
                    t0 = time.monotonic()
                    figures = run_part(trees[side][0], part, options, log_file)
                    log(f"  {len(figures)} figures in {time.monotonic() - t0:.0f} s")
                    for name, value in figures.items():
                        values = runs[side][name]
                        if len(values) > rep:  # the same figure from another part of this repetition
                            values[rep] = max(values[rep], value)
                        else:
                            values.append(value)
        print(f"# compare: a = {trees['a'][1]}, b = {trees['b'][1]}")
        print(
            f"# {repeat} run(s) per revision and part ({', '.join(parts)}), interleaved part by part in the order "
            f"a b b a ...; mode: {'quick' if '--quick' in options else 'full'}; each figure the median of its runs"
        )
        print(
            f"# load average at start {load_at_start}, at end {' '.join(Path('/proc/loadavg').read_text().split()[:3])}"
        )
        print(f"# total time {time.monotonic() - started:.0f} s")
        print("# figure: a b (b vs a, in %; 'WORSE' when b is more than 5 % worse) [a's runs] [b's runs]")
        worse = []
        for name in runs["a"]:
            if name not in runs["b"]:
                continue
            a, b = statistics.median(runs["a"][name]), statistics.median(runs["b"][name])
            change = 100 * (b - a) / abs(a) if a else 0.0
            flag = ""
            if worse_pct(name, a, b) > TOLERANCE_PCT:
                flag = " WORSE"
                worse.append(name)
            detail = f"[{' '.join(map(fmt, runs['a'][name]))}] [{' '.join(map(fmt, runs['b'][name]))}]"
            print(f"{name}: {fmt(a)} {fmt(b)} ({change:+.1f}%){flag} {detail}")
        only = sorted(set(runs["a"]) ^ set(runs["b"]))
        if only:
            print(f"# figures of one revision only: {', '.join(only)}")
        if worse:
            print(f"# verdict: {len(worse)} figure(s) more than 5 % worse in b: {', '.join(worse)}")
        else:
            print("# verdict: no figure of b more than 5 % worse than a's")
        # CPU per request or item is what a path costs, whatever CPU the machine had left: on a busy machine the
        # rates and latencies swing with the other load, these do not.
        cpu_worse = [name for name in worse if "_cpu_ms_" in name]
        print(
            "# verdict on CPU per request or item (steady on a shared machine): "
            + (f"{len(cpu_worse)} more than 5 % worse: {', '.join(cpu_worse)}" if cpu_worse else "none 5 % worse")
        )
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
