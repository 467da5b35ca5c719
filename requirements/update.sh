#!/usr/bin/env bash
# Re-resolve the locked dependency sets from pyproject.toml: exact versions with their hashes, installed with
# `pip install --require-hashes` by tests/run.sh (dev.txt), the Dockerfile (service.txt) and bench/ (bench.txt).
# Run it after changing a dependency in pyproject.toml, or to take newer releases (--upgrade), and commit the
# three files with the change: two installs from the same commit get the same packages.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/pip-compile ] || .venv/bin/python -m pip install --quiet pip-tools
compile() {
  .venv/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
    --no-emit-find-links "$@" pyproject.toml
}
compile "${@}" -o requirements/service.txt
compile "${@}" --extra dev -o requirements/dev.txt
compile "${@}" --extra dev --extra bench -o requirements/bench.txt
