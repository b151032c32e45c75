#!/usr/bin/env bash
# Cross-dataset PromptKD (paper Table 2): the ImageNet-trained teacher distils a student on
# DATASET's unlabelled train split (all classes, transductive); the student is tested on
# DATASET's test split. Usage: bash scripts/promptkd/xd.sh DATASET SEED
# Teacher: ${TEACHERS}/ImageNet-xd/${TEACHER_CFG}/seed<SEED> (teacher.sh imagenet SEED cross),
# else the released ${RELEASED_TEACHERS}/ImageNet-xd/VLPromptLearner_large/model.pth.tar-20.
# Run dir: ${OUTPUT}/xd/<Dataset>/${XD_CFG}/seed<SEED>. Environment: common.sh.
set -euo pipefail
# shellcheck source=scripts/promptkd/common.sh source-path=SCRIPTDIR/../..
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ $# -eq 2 ] || pkd_die "usage: $0 DATASET SEED"
dataset="$1"
seed="$2"
pkd_check_seed "${seed}"
name="$(pkd_registry_name "${dataset}")"
kd_weight="$(pkd_kd_weight "${dataset}")"
pkd_teacher_opts ImageNet-xd "${seed}" ImageNet-xd/VLPromptLearner_large/model.pth.tar-20 || exit 1
# The student is scored against the teacher's text features of the TARGET's classes (the
# ImageNet-trained prompts applied to DATASET's class names), exported once per target.
if [ "${dataset}" != imagenet ]; then
    vectors="${PKD_TEACHER_DIR}/class_vectors_${name}.safetensors"
    pkd_ensure_class_vectors "$(pkd_teacher_weights)" "${dataset}" "${vectors}"
    PKD_TEACHER_ARGS=(TRAINER.PROMPTKD.TEACHER_WEIGHTS "$(pkd_teacher_weights)"
        TRAINER.PROMPTKD.CLASS_VECTORS "${vectors}")
else
    pkd_ensure_class_vectors "$(pkd_teacher_weights)" imagenet "${PKD_TEACHER_DIR}/class_vectors.safetensors"
fi

pkd_run "$(pkd_run_dir "${PKD_STAGE:-xd}" "${name}" "${XD_CFG}" "${seed}")" \
    --root "${DATA}" \
    --seed "${seed}" \
    --trainer "${STUDENT_TRAINER}" \
    --dataset-config-file "$(pkd_dataset_config "${dataset}")" \
    --config-file "$(pkd_trainer_config "${STUDENT_TRAINER}" "${XD_CFG}")" \
    DATASET.NUM_SHOTS 0 \
    DATASET.SUBSAMPLE_CLASSES all \
    TRAINER.MODAL cross \
    TRAINER.PROMPTKD.TEMPERATURE "${TEMPERATURE}" \
    TRAINER.PROMPTKD.KD_WEIGHT "${kd_weight}" \
    "${PKD_TEACHER_ARGS[@]}"
