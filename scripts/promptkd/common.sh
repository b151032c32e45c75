#!/usr/bin/env bash
# Shared settings and functions of the PromptKD sweep scripts (sourced, not run).
#
# Everything a user may want to change comes from the environment, with these defaults:
#   DATA        dataset root (train.py --root)                          [data]
#   OUTPUT      output root; runs go to ${OUTPUT}/<stage>/<Dataset>/<cfg>/seed<S>   [output]
#   TEACHERS    root of our own teacher runs                            [${OUTPUT}/teacher]
#   RELEASED_TEACHERS  the released checkpoints in the upstream layout  [teacher_model]
#               (<Dataset>/VLPromptLearner/model-best.pth.tar,
#                ImageNet-xd/VLPromptLearner_large/model.pth.tar-20)
#   TEACHER_SEED  use this seed's teacher run for every student seed    [the student's seed]
#   PYTHON      interpreter                    [<repo>/.venv/bin/python if present, else python]
#   KD_WEIGHT   overrides the per-dataset KD weight of the table below
#   TEMPERATURE KD temperature                                          [1.0]
#   CONFIGS     directory of datasets/*.yaml and trainers/<T>/*.yaml    [<repo>/configs]
#   EXTRA_OPTS  extra KEY VALUE config opts appended to every run (word-split on spaces),
#               e.g. EXTRA_OPTS="OPTIM.MAX_EPOCH 2 DATALOADER.TRAIN_X.BATCH_SIZE 4"
#   TEACHER_OPTS  extra KEY VALUE opts describing the teacher (e.g. MODEL.BACKBONE.NAME, prompt
#               shape) given to tools/export_class_vectors.py when class vectors are exported
#   OVERWRITE   1: rerun a finished run whose command differs from the one asked for
#   DRY_RUN     1: print the commands instead of running them
#
# Resume rule (see docs/REPRODUCE.md): a run directory is finished when it holds results.json
# (written by the trainer as its very last step) and its command.txt equals the command the
# script would run now; then the run is skipped. A directory without results.json is a killed
# or failed run and is deleted and started again from scratch. A finished run whose command
# differs is an error (set OVERWRITE=1 to replace it), so results are never silently mixed.
# The signature in command.txt is train.py's argument list minus the values of --root and
# --output-dir, so moving the data or the output tree does not invalidate finished runs.

PKD_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

DATA="${DATA:-data}"
OUTPUT="${OUTPUT:-output}"
TEACHERS="${TEACHERS:-${OUTPUT}/teacher}"
RELEASED_TEACHERS="${RELEASED_TEACHERS:-teacher_model}"
TEMPERATURE="${TEMPERATURE:-1.0}"
CONFIGS="${CONFIGS:-${PKD_REPO}/configs}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "${PKD_REPO}/.venv/bin/python" ]; then
        PYTHON="${PKD_REPO}/.venv/bin/python"
    else
        PYTHON="python"
    fi
fi

# Configs of the paper's recipe (configs/trainers/<trainer>/<cfg>.yaml).
TEACHER_TRAINER="${TEACHER_TRAINER:-PromptKDTeacher}"
TEACHER_CFG="${TEACHER_CFG:-vit_l14_c2_ep20_batch8_4+4ctx}"
TEACHER_SHOTS="${TEACHER_SHOTS:-16}"
STUDENT_TRAINER="${STUDENT_TRAINER:-PromptKD}"
STUDENT_CFG="${STUDENT_CFG:-vit_b16_c2_ep20_batch8_4+4ctx}"
XD_CFG="${XD_CFG:-vit_b16_c2_ep20_batch8_4+4ctx_cross_datasets}"

# The per-dataset table: dataset config name (configs/datasets/<name>.yaml), registry name
# (DATASET.NAME, also the directory name of the upstream teacher_model/ layout), KD weight.
# KD weights follow the comment in the official scripts/promptkd/base2new_train.sh
# (zhengli97/PromptKD@ec244f7): 200 for fgvc_aircraft, oxford_flowers and dtd, 1000 for the
# rest. That script itself hard-codes KD_WEIGHT 1000 for every dataset (promptkd_facts.md,
# section 3, defect 4); an older revision of the comment also listed dtd under 1000. We use
# the commented per-dataset values; KD_WEIGHT=1000 reproduces the script as released.
# The "-" rows are the domain-generalisation targets (test-only ImageNet variants); the
# ImageNet cross-dataset teacher is used there, with the ImageNet KD weight.
PKD_DATASET_TABLE="
imagenet        ImageNet             1000
caltech101      Caltech101           1000
oxford_pets     OxfordPets           1000
stanford_cars   StanfordCars         1000
oxford_flowers  OxfordFlowers        200
food101         Food101              1000
fgvc_aircraft   FGVCAircraft         200
sun397          SUN397               1000
dtd             DescribableTextures  200
eurosat         EuroSAT              1000
ucf101          UCF101               1000
imagenetv2      ImageNetV2           1000
imagenet_sketch ImageNetSketch       1000
imagenet_a      ImageNetA            1000
imagenet_r      ImageNetR            1000
toy_shapes      ToyShapes            1000
"

# The 11 base-to-novel datasets, the 10 cross-dataset targets and the 4 DG targets
# (read by the scripts that source this file).
# shellcheck disable=SC2034
PKD_B2N_DATASETS="imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"
# shellcheck disable=SC2034
PKD_XD_DATASETS="caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"
# shellcheck disable=SC2034
PKD_DG_DATASETS="imagenetv2 imagenet_sketch imagenet_a imagenet_r"

pkd_die() {
    echo "error: $*" >&2
    exit 1
}

pkd_log() {
    echo "[promptkd] $*" >&2
}

# pkd_table_field DATASET COLUMN: column 2 = registry name, 3 = KD weight.
pkd_table_field() {
    local dataset="$1" column="$2" value
    value="$(awk -v d="${dataset}" -v c="${column}" '$1 == d { print $c }' <<<"${PKD_DATASET_TABLE}")"
    if [ -z "${value}" ]; then
        local known
        known="$(awk 'NF { printf "%s ", $1 }' <<<"${PKD_DATASET_TABLE}")"
        pkd_die "unknown dataset '${dataset}'; known: ${known}"
    fi
    echo "${value}"
}

pkd_registry_name() {
    pkd_table_field "$1" 2
}

# The KD weight of DATASET: env KD_WEIGHT when set, else the table's value; written as a float
# literal (the config key is a float and yacs rejects an int).
pkd_kd_weight() {
    local weight="${KD_WEIGHT:-}"
    if [ -z "${weight}" ]; then
        weight="$(pkd_table_field "$1" 3)"
    fi
    if [[ "${weight}" =~ ^[0-9]+$ ]]; then
        weight="${weight}.0"
    fi
    echo "${weight}"
}

pkd_check_seed() {
    [[ "$1" =~ ^[0-9]+$ ]] || pkd_die "seed must be a non-negative integer, got '$1'"
}

pkd_dataset_config() {
    local path="${CONFIGS}/datasets/$1.yaml"
    [ -f "${path}" ] || pkd_die "dataset config not found: ${path}"
    echo "${path}"
}

pkd_trainer_config() {
    local path="${CONFIGS}/trainers/$1/$2.yaml"
    [ -f "${path}" ] || pkd_die "trainer config not found: ${path}"
    echo "${path}"
}

# pkd_run_dir STAGE DATASET_DIR CFG SEED
pkd_run_dir() {
    echo "${OUTPUT}/$1/$2/$3/seed$4"
}

# A run is finished when results.json exists (the trainer writes it last).
pkd_finished() {
    [ -f "$1/results.json" ]
}

# pkd_last_epoch RUN_DIR: the epoch of a finished run's last checkpoint, read from the
# "checkpoint" pointer of its model directory (the student never writes model-best, so an
# --eval-only of it must name the epoch with --load-epoch).
pkd_last_epoch() {
    local pointer name
    for pointer in "$1"/*/checkpoint; do
        [ -f "${pointer}" ] || continue
        name="$(head -n 1 "${pointer}")"
        case "${name}" in
            model.pth.tar-[0-9]*)
                echo "${name#model.pth.tar-}"
                return 0
                ;;
        esac
    done
    pkd_die "no model.pth.tar-<N> named by a checkpoint pointer in $1/*/checkpoint"
}

# The signature of a train.py argument list: one argument a line, values of --root and
# --output-dir left out (see the header).
pkd_signature() {
    local skip=0 arg
    for arg in "$@"; do
        if [ "${skip}" = 1 ]; then
            skip=0
            continue
        fi
        case "${arg}" in
            --root | --output-dir)
                echo "${arg}"
                skip=1
                ;;
            *) echo "${arg}" ;;
        esac
    done
}

# pkd_run RUN_DIR ARG...: run `train.py --output-dir RUN_DIR ARG... EXTRA_OPTS` unless already
# finished (flags must precede the KEY VALUE opts: train.py takes everything after the first
# opt as opts). Output goes to RUN_DIR/stdout.txt (and the terminal unless QUIET=1).
pkd_run() {
    local run_dir="$1"
    shift
    local -a args=(--output-dir "${run_dir}" "$@")
    if [ -n "${EXTRA_OPTS:-}" ]; then
        local -a extra
        read -r -a extra <<<"${EXTRA_OPTS}"
        args+=("${extra[@]}")
    fi
    local want
    want="$(pkd_signature "${args[@]}")"
    if [ "${DRY_RUN:-0}" = 1 ]; then
        printf '%q ' "${PYTHON}" "${PKD_REPO}/train.py" "${args[@]}"
        echo
        return 0
    fi
    if pkd_finished "${run_dir}"; then
        if [ -f "${run_dir}/command.txt" ] && [ "$(cat "${run_dir}/command.txt")" = "${want}" ]; then
            pkd_log "skip (finished): ${run_dir}"
            return 0
        fi
        if [ "${OVERWRITE:-0}" != 1 ]; then
            pkd_log "a finished run with a different command is in ${run_dir}:"
            diff <(cat "${run_dir}/command.txt" 2>/dev/null || true) <(echo "${want}") >&2 || true
            pkd_die "refusing to overwrite it; delete the directory or set OVERWRITE=1"
        fi
        pkd_log "overwrite (OVERWRITE=1): ${run_dir}"
    elif [ -e "${run_dir}" ]; then
        pkd_log "restart (no results.json, killed or failed run): ${run_dir}"
    fi
    rm -rf "${run_dir}"
    mkdir -p "${run_dir}"
    echo "${want}" >"${run_dir}/command.txt"
    pkd_log "run: ${run_dir}"
    local rc=0
    if [ "${QUIET:-0}" = 1 ]; then
        "${PYTHON}" "${PKD_REPO}/train.py" "${args[@]}" >"${run_dir}/stdout.txt" 2>&1 || rc=$?
    else
        # pipefail (set by every script) makes the pipeline fail when train.py fails.
        "${PYTHON}" "${PKD_REPO}/train.py" "${args[@]}" 2>&1 | tee "${run_dir}/stdout.txt" || rc=$?
    fi
    if [ "${rc}" != 0 ]; then
        pkd_die "train.py failed (exit ${rc}); see ${run_dir}/stdout.txt"
    fi
    pkd_finished "${run_dir}" || pkd_die "train.py exited without writing ${run_dir}/results.json"
}

# pkd_teacher_run DATASET_DIR SEED: our finished teacher run directory, or nothing.
pkd_teacher_run() {
    local dir
    dir="${TEACHERS}/$1/${TEACHER_CFG}/seed${TEACHER_SEED:-$2}"
    if pkd_finished "${dir}" && [ -f "${dir}/class_vectors.safetensors" ]; then
        echo "${dir}"
    fi
}

# pkd_teacher_opts DATASET_DIR SEED RELEASED_FILE: point the student at its teacher. Sets
# PKD_TEACHER_DIR (the directory holding class_vectors.safetensors) and the array
# PKD_TEACHER_ARGS (TRAINER.PROMPTKD.TEACHER_WEIGHTS and CLASS_VECTORS opts). Our own finished
# run comes first, then the released checkpoint (upstream layout), whose class vectors live
# next to it (pkd_ensure_class_vectors exports them on first use). Otherwise it prints
# every path tried and how to get a teacher, and returns 1.
pkd_teacher_opts() {
    local dataset_dir="$1" seed="$2" released="${RELEASED_TEACHERS}/$3" run
    run="$(pkd_teacher_run "${dataset_dir}" "${seed}")"
    PKD_TEACHER_ARGS=()
    PKD_TEACHER_DIR=""
    if [ -n "${run}" ]; then
        PKD_TEACHER_DIR="${run}"
        PKD_TEACHER_ARGS=(TRAINER.PROMPTKD.TEACHER_WEIGHTS "${run}"
            TRAINER.PROMPTKD.CLASS_VECTORS "${run}/class_vectors.safetensors")
        return 0
    fi
    if [ -f "${released}" ]; then
        PKD_TEACHER_DIR="${RELEASED_TEACHERS}/${dataset_dir}"
        # shellcheck disable=SC2034
        PKD_TEACHER_ARGS=(TRAINER.PROMPTKD.TEACHER_WEIGHTS "${released}"
            TRAINER.PROMPTKD.CLASS_VECTORS "${PKD_TEACHER_DIR}/class_vectors.safetensors")
        return 0
    fi
    local how="bash scripts/promptkd/teacher.sh <dataset> <seed>"
    [ "${dataset_dir}" = ImageNet-xd ] && how="bash scripts/promptkd/teacher.sh imagenet <seed> cross"
    {
        echo "error: no teacher for ${dataset_dir} (seed ${TEACHER_SEED:-${seed}}). Tried:"
        echo "  ${TEACHERS}/${dataset_dir}/${TEACHER_CFG}/seed${TEACHER_SEED:-${seed}}/ (our teacher run: needs results.json and class_vectors.safetensors)"
        echo "  ${released} (released teacher, upstream layout)"
        echo "Train one with:  ${how}"
        echo "or fetch the released ones:  ${PYTHON} tools/download_teachers.py --out ${RELEASED_TEACHERS}"
        echo "(set TEACHERS, RELEASED_TEACHERS or TEACHER_SEED if they live elsewhere)"
    } >&2
    return 1
}

# pkd_ensure_class_vectors WEIGHTS DATASET FILE: make sure FILE holds the teacher's class
# vectors for DATASET's classes (the trained text prompts applied to its class names), exporting
# them from the teacher checkpoint WEIGHTS with tools/export_class_vectors.py when FILE is
# missing. Cross-dataset/DG students need this (the ImageNet teacher's own file holds ImageNet's
# classes), and so do released teachers, which ship checkpoints only.
pkd_ensure_class_vectors() {
    local weights="$1" dataset="$2" file="$3"
    [ -f "${file}" ] && return 0
    local -a args=(--root "${DATA}"
        --dataset-config-file "$(pkd_dataset_config "${dataset}")"
        --config-file "$(pkd_trainer_config "${TEACHER_TRAINER}" "${TEACHER_CFG}")"
        --teacher-weights "${weights}" --output "${file}")
    if [ -n "${TEACHER_OPTS:-}" ]; then
        local -a extra
        read -r -a extra <<<"${TEACHER_OPTS}"
        args+=("${extra[@]}")
    fi
    if [ "${DRY_RUN:-0}" = 1 ]; then
        printf '%q ' "${PYTHON}" "${PKD_REPO}/tools/export_class_vectors.py" "${args[@]}"
        echo
        return 0
    fi
    pkd_log "export class vectors of $(pkd_registry_name "${dataset}") from ${weights} -> ${file}"
    "${PYTHON}" "${PKD_REPO}/tools/export_class_vectors.py" "${args[@]}" ||
        pkd_die "exporting class vectors to ${file} failed (see the message above)"
}

# pkd_teacher_weights: the TEACHER_WEIGHTS value chosen by pkd_teacher_opts.
pkd_teacher_weights() {
    echo "${PKD_TEACHER_ARGS[1]}"
}
