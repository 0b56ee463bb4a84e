#!/usr/bin/env bash
# Set up a development environment: .venv with stackbuild and its test tools,
# a Docker engine (installed from Debian's packages and started when none
# answers and we are root) and QEMU user emulation for foreign platforms.
# Safe to run twice: each step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi
# reinstall only when the project's metadata changed since the last install
stamp=.venv/.stackbuild-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing stackbuild and test tools into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
    echo "$want" > "$stamp"
fi

scripts/ensure-docker.sh
scripts/emulation.sh
scripts/prepare-example.sh
