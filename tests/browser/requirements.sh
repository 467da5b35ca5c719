#!/usr/bin/env bash
# System requirements of tests/browser: Debian's Chromium, driven by Playwright's Python package (the `dev` extra)
# through executable_path=/usr/bin/chromium. Never `playwright install`: no browser is downloaded.
# Called from the CI script before pytest; a no-op when chromium is already there. Needs root (or sudo).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
else
    sudo apt-get update -qq && sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi

command -v chromium >/dev/null 2>&1
exit 0
