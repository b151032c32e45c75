#!/usr/bin/env bash
# Distil a PromptKD student (ViT-B/16) on DATASET's unlabelled train split (base + novel
# classes, transductive as in the paper) and evaluate it on the base and novel test classes.
# Usage: bash scripts/promptkd/base2novel.sh DATASET SEED
# Teacher: ${TEACHERS}/<Dataset>/${TEACHER_CFG}/seed<SEED> (teacher.sh), else the released
# ${RELEASED_TEACHERS}/<Dataset>/VLPromptLearner/model-best.pth.tar.
# Run dir: ${OUTPUT}/base2novel/<Dataset>/${STUDENT_CFG}/seed<SEED>. Environment: common.sh.
set -euo pipefail
# shellcheck source=scripts/promptkd/common.sh source-path=SCRIPTDIR/../..
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ $# -eq 2 ] || pkd_die "usage: $0 DATASET SEED"
dataset="$1"
seed="$2"
pkd_check_seed "${seed}"
name="$(pkd_registry_name "${dataset}")"
kd_weight="$(pkd_kd_weight "${dataset}")"
pkd_teacher_opts "${name}" "${seed}" "${name}/VLPromptLearner/model-best.pth.tar" || exit 1
# A released teacher ships a checkpoint only: export its class vectors on first use.
pkd_ensure_class_vectors "$(pkd_teacher_weights)" "${dataset}" "${PKD_TEACHER_DIR}/class_vectors.safetensors"

pkd_run "$(pkd_run_dir base2novel "${name}" "${STUDENT_CFG}" "${seed}")" \
    --root "${DATA}" \
    --seed "${seed}" \
    --trainer "${STUDENT_TRAINER}" \
    --dataset-config-file "$(pkd_dataset_config "${dataset}")" \
    --config-file "$(pkd_trainer_config "${STUDENT_TRAINER}" "${STUDENT_CFG}")" \
    DATASET.NUM_SHOTS 0 \
    TRAINER.MODAL base2novel \
    TRAINER.PROMPTKD.TEMPERATURE "${TEMPERATURE}" \
    TRAINER.PROMPTKD.KD_WEIGHT "${kd_weight}" \
    "${PKD_TEACHER_ARGS[@]}"
