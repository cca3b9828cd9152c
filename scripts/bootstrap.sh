#!/usr/bin/env bash
# Installs everything the demo and the tests need, idempotently: a virtualenv with the pinned
# Python packages, and Azurite (Azure Blob emulator) from npm, linked into .venv/bin. Safe to run
# on every invocation: each step is skipped when its inputs have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
AZURITE_VERSION=3.35.0   # 3.37 needs Node 22; these machines have Node 20

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv" >&2
  "$PY" -m venv .venv
fi

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "bootstrap: installing Python packages (pinned by constraints.txt)" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
  touch "$stamp"
fi

if [ ! -x .cache/azurite/node_modules/.bin/azurite-blob ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "bootstrap: installing azurite@$AZURITE_VERSION from npm" >&2
    npm install --silent --no-audit --no-fund --prefix .cache/azurite "azurite@$AZURITE_VERSION" >&2
  else
    echo "bootstrap: npm not found; Azurite (the Azure Blob emulator) cannot be installed. Install Node.js 20+." >&2
    exit 1
  fi
fi
# The emulators find azurite-blob beside the virtualenv's Python (or on PATH, or in $AZURITE_BIN).
if [ "$(readlink .venv/bin/azurite-blob 2>/dev/null)" != "$PWD/.cache/azurite/node_modules/.bin/azurite-blob" ]; then
  ln -sfn "$PWD/.cache/azurite/node_modules/.bin/azurite-blob" .venv/bin/azurite-blob
fi
