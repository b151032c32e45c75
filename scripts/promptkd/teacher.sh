#!/usr/bin/env bash
# Train a ViT-L/14 PromptSRC teacher (PromptKDTeacher) for PromptKD.
# Usage: bash scripts/promptkd/teacher.sh DATASET SEED [base2novel|cross]
#   base2novel (default): 16-shot labelled base classes of DATASET (paper Table 10 teachers);
#                         run dir ${TEACHERS}/<Dataset>/${TEACHER_CFG}/seed<SEED>
#   cross: ImageNet 16-shot, all classes, the source teacher of cross-dataset and DG runs
#          (paper Table 11); run dir ${TEACHERS}/ImageNet-xd/${TEACHER_CFG}/seed<SEED>
# The run writes results.json and class_vectors.safetensors (the student's class vectors).
# Environment: see common.sh.
set -euo pipefail
# shellcheck source=scripts/promptkd/common.sh source-path=SCRIPTDIR/../..
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ $# -ge 2 ] && [ $# -le 3 ] || pkd_die "usage: $0 DATASET SEED [base2novel|cross]"
dataset="$1"
seed="$2"
setting="${3:-base2novel}"
pkd_check_seed "${seed}"
name="$(pkd_registry_name "${dataset}")"

case "${setting}" in
    base2novel)
        subsample=base
        dataset_dir="${name}"
        ;;
    cross)
        [ "${dataset}" = imagenet ] || pkd_die "the cross-dataset teacher is trained on imagenet, got '${dataset}'"
        subsample=all
        dataset_dir="${name}-xd"
        ;;
    *) pkd_die "setting must be base2novel or cross, got '${setting}'" ;;
esac

run_dir="${TEACHERS}/${dataset_dir}/${TEACHER_CFG}/seed${seed}"
pkd_run "${run_dir}" \
    --root "${DATA}" \
    --seed "${seed}" \
    --trainer "${TEACHER_TRAINER}" \
    --dataset-config-file "$(pkd_dataset_config "${dataset}")" \
    --config-file "$(pkd_trainer_config "${TEACHER_TRAINER}" "${TEACHER_CFG}")" \
    DATASET.NUM_SHOTS "${TEACHER_SHOTS}" \
    DATASET.SUBSAMPLE_CLASSES "${subsample}"
