#!/usr/bin/env bash
# Set up a development environment: .venv with stackbuild and its test tools,
# and a Docker engine (installed from Debian's packages and started when none
# answers and we are root). Safe to run twice: each step checks first.
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
scripts/prepare-example.sh

# Graphviz draws `graph --format svg|png` and the report's graph; headless Chromium
# renders the report in its test. Installed (as root) only when missing.
missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "setup: apt-get install -y ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    else
        echo "setup: not root; install ${missing[*]} for the pictures and the report's test" >&2
    fi
fi
