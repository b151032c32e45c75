#!/usr/bin/env bash
# Create/refresh the virtual environment, then run ruff and the test suite (what CI runs).
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
pkd_ensure_venv requirements-dev.txt
"${PKD_PY}" -m ruff check .
"${PKD_PY}" -m ruff format --check .
OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" "${PKD_PY}" -m pytest -q "$@"
