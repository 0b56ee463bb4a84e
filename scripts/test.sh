#!/usr/bin/env bash
# The whole test suite, unit and integration (real Docker engine, real
# registry), after the same set-up as the main job. Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
.venv/bin/ruff check stackbuild tests bench
.venv/bin/mypy
.venv/bin/lint-imports
# integration tests fail (instead of skipping) when no engine answers
export STACKBUILD_REQUIRE_DOCKER=1
# --durations=15: the log ends with the slowest tests (the suite must stay well under
# 15 minutes: they are where to look first)
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"
