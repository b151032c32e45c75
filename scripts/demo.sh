#!/usr/bin/env bash
# README's first command: the whole PromptKD pipeline on the embedded toy world, on CPU.
# Creates .venv on first use, generates the ToyShapes data under ${DATA:-data}, runs zero-shot
# student/teacher -> PromptKDTeacher -> class vectors -> PromptKDStudent -> evaluation through
# train.py, and prints the Base/New/HM table. Outputs: ${OUTPUT:-output}/demo/ (summary.json).
# Re-running reuses finished stages. Extra arguments go to tools/demo.py (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
pkd_ensure_venv requirements.txt
exec "${PKD_PY}" tools/demo.py --data "${DATA:-data}" --output "${OUTPUT:-output}" "$@"
