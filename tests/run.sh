#!/usr/bin/env bash
# The whole test suite, as the README's second command runs it: installs the project into .venv, runs ruff (lint
# and format) and mypy, makes sure PostgreSQL is up, then runs every test against SQLite (the embedded default) and
# against PostgreSQL (a fresh database for the run). Exits non-zero on any failure or finding.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
# Exact versions with their hashes (requirements/update.sh makes the lock from pyproject.toml), then the project.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements/dev.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .

# Lint, format and types (ruff and mypy pinned in requirements/dev.txt, configured in pyproject.toml): any finding
# fails the run before a test starts.
echo "== ruff check, ruff format --check, mypy ==" >&2
.venv/bin/ruff check app policies tests bench migrations
.venv/bin/ruff format --check app policies tests bench migrations
.venv/bin/mypy

# Debian packages the tests drive: Chromium, Docker and debootstrap, promtool (see the script).
bash tests/system-packages.sh

PG_URL=${BILLING_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "PostgreSQL is down; starting it" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }

echo "== tests on SQLite ==" >&2
env -u BILLING_TEST_POSTGRES_URL .venv/bin/python -m pytest "$@"
echo "== tests on PostgreSQL ==" >&2
BILLING_TEST_POSTGRES_URL="$PG_URL" .venv/bin/python -m pytest "$@"
