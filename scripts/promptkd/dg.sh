#!/usr/bin/env bash
# Domain generalisation (paper supplementary Table 9): ImageNet source -> ImageNet-V2,
# -Sketch, -A, -R. Usage: bash scripts/promptkd/dg.sh [SEED [TARGET...]]
#   SEED defaults to every seed of $SEEDS ("1 2 3"); TARGET defaults to the four variants.
# DG_MODE selects what Table 9 means:
#   transductive (default, the paper's setting per promptkd_facts.md 1.3 and upstream issue
#       #50): the ImageNet cross-dataset teacher (as in xd.sh) distils a student on each
#       target's unlabelled images, which is then tested on that target. Run dir
#       ${OUTPUT}/dg/<Target>/${XD_CFG}/seed<S>.
#   eval: no training on the target; the ImageNet-distilled cross student
#       ${OUTPUT}/xd/ImageNet/${XD_CFG}/seed<S> (xd.sh imagenet S) is evaluated on each target
#       with the teacher's text features of the target's classes (class_vectors_<Target>
#       .safetensors next to the teacher; ImageNet's file for V2/Sketch). Run dir
#       ${OUTPUT}/dg-eval/<Target>/${XD_CFG}/seed<S>.
# Environment: see common.sh.
set -euo pipefail
# shellcheck source=scripts/promptkd/common.sh source-path=SCRIPTDIR/../..
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [ $# -ge 1 ]; then
    seeds="$1"
    shift
else
    seeds="${SEEDS:-1 2 3}"
fi
if [ $# -ge 1 ]; then
    targets="$*"
else
    targets="${PKD_DG_DATASETS}"
fi
mode="${DG_MODE:-transductive}"

for seed in ${seeds}; do
    pkd_check_seed "${seed}"
    for target in ${targets}; do
        case " ${PKD_DG_DATASETS} " in
            *" ${target} "*) ;;
            *) pkd_die "'${target}' is not a DG target (${PKD_DG_DATASETS})" ;;
        esac
        case "${mode}" in
            transductive)
                PKD_STAGE=dg bash "$(dirname "${BASH_SOURCE[0]}")/xd.sh" "${target}" "${seed}"
                ;;
            eval)
                name="$(pkd_registry_name "${target}")"
                source_run="$(pkd_run_dir xd ImageNet "${XD_CFG}" "${seed}")"
                pkd_finished "${source_run}" ||
                    pkd_die "no finished ImageNet cross student in ${source_run}; run: bash scripts/promptkd/xd.sh imagenet ${seed}"
                # The class vectors must be the teacher's text features of the target's classes:
                # class_vectors_<Target>.safetensors in the teacher's directory; ImageNet-V2 and
                # -Sketch have ImageNet's 1000 class names, so ImageNet's file serves them too.
                pkd_teacher_opts ImageNet-xd "${seed}" ImageNet-xd/VLPromptLearner_large/model.pth.tar-20 || exit 1
                vectors="${PKD_TEACHER_DIR}/class_vectors_${name}.safetensors"
                pkd_ensure_class_vectors "$(pkd_teacher_weights)" "${target}" "${vectors}"
                PKD_TEACHER_ARGS=(TRAINER.PROMPTKD.TEACHER_WEIGHTS "$(pkd_teacher_weights)"
                    TRAINER.PROMPTKD.CLASS_VECTORS "${vectors}")
                # The student writes no model-best: evaluate its last checkpoint explicitly.
                epoch="$(pkd_last_epoch "${source_run}")"
                pkd_run "$(pkd_run_dir dg-eval "${name}" "${XD_CFG}" "${seed}")" \
                    --root "${DATA}" \
                    --seed "${seed}" \
                    --trainer "${STUDENT_TRAINER}" \
                    --dataset-config-file "$(pkd_dataset_config "${target}")" \
                    --config-file "$(pkd_trainer_config "${STUDENT_TRAINER}" "${XD_CFG}")" \
                    --eval-only \
                    --model-dir "${source_run}" \
                    --load-epoch "${epoch}" \
                    DATASET.NUM_SHOTS 0 \
                    DATASET.SUBSAMPLE_CLASSES all \
                    TRAINER.MODAL cross \
                    "${PKD_TEACHER_ARGS[@]}"
                ;;
            *) pkd_die "DG_MODE must be transductive or eval, got '${mode}'" ;;
        esac
    done
done
