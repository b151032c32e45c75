#!/usr/bin/env bash
# Create/refresh the virtual environment, then run ruff and the test suite.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha"
want="$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r requirements-dev.txt
    echo "$want" > "$stamp"
fi
"$VENV/bin/python" -m ruff check .
"$VENV/bin/python" -m ruff format --check .
OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" "$VENV/bin/python" -m pytest -q "$@"
