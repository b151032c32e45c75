#!/usr/bin/env bash
# README's third command: data-free distillation on the embedded toy world, on CPU.
# Creates .venv on first use, generates ToyShapesDG (photo, smooth, sketch, cartoon) under
# ${DATA:-data}, evaluates the zero-shot teacher and student, then for each prompt strategy
# (none, mix, random, contrastive) synthesizes images from class names with the toy teacher and
# distils the toy student on them, evaluating it on every domain. Prints the per-domain table;
# writes ${OUTPUT:-output}/datafree/summary.json. Re-running reuses finished stages.
# Extra arguments go to tools/datafree_demo.py (e.g. --seeds 1 2 3, --cnn, --fast; see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
pkd_ensure_venv requirements.txt
exec "${PKD_PY}" tools/datafree_demo.py --data "${DATA:-data}" --output "${OUTPUT:-output}" "$@"
