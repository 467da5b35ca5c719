#!/usr/bin/env bash
# The Debian packages the tests drive, installed when missing (tests/run.sh calls this before pytest; needs root
# or sudo):
#   chromium     tests/browser: the ops console in a real browser, through Playwright's Python package with
#                executable_path=/usr/bin/chromium (never `playwright install`: no browser is downloaded)
#   docker.io    tests/image: builds the Dockerfile and runs the image against PostgreSQL
#   debootstrap  tests/image: the image's Debian base, built locally (no image registry is reachable)
#   prometheus   tests/test_alerts.py: `promtool check rules` and `promtool test rules` on ops/alerts.yml
#   poppler-utils tests/api/test_invoices.py: `pdftotext` and `pdftoppm` read and render the invoice PDFs
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing Debian packages for the tests: ${missing[*]}" >&2
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
