#!/usr/bin/env bash
# Run one stage of the PromptKD recipe over datasets x seeds, resumably.
# Usage: bash scripts/promptkd/sweep.sh STAGE [DATASET...]
#   STAGE: teacher     base-to-novel teachers (teacher.sh D S)          [11 datasets]
#          xd-teacher  the ImageNet cross-dataset teacher (teacher.sh imagenet S cross)
#          base2novel  students, paper Table 1 (base2novel.sh D S)      [11 datasets]
#          table1      teacher then base2novel for each dataset and seed
#          xd          cross-dataset students, Table 2 (xd.sh D S)      [10 targets]
#          dg          domain generalisation, Table 9 (dg.sh S D)       [4 ImageNet variants]
# Env: SEEDS (default "1 2 3"); GPUS (e.g. "0 1 2 3": one worker per GPU, each run sees only
# its GPU through CUDA_VISIBLE_DEVICES; default: one run at a time, device untouched);
# everything of common.sh. Finished runs are skipped and killed ones restarted, so rerunning
# the same command resumes a killed sweep. A failed run does not stop the others; the sweep
# exits 1 at the end and lists the failures.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/promptkd/common.sh source-path=SCRIPTDIR/../..
source "${here}/common.sh"

[ $# -ge 1 ] || pkd_die "usage: $0 STAGE [DATASET...] (STAGE: teacher xd-teacher base2novel table1 xd dg)"
stage="$1"
shift
seeds="${SEEDS:-1 2 3}"
case "${stage}" in
    teacher | base2novel | table1) default_datasets="${PKD_B2N_DATASETS}" ;;
    xd) default_datasets="${PKD_XD_DATASETS}" ;;
    dg) default_datasets="${PKD_DG_DATASETS}" ;;
    xd-teacher) default_datasets="imagenet" ;;
    *) pkd_die "unknown stage '${stage}' (teacher xd-teacher base2novel table1 xd dg)" ;;
esac
if [ $# -ge 1 ]; then
    datasets="$*"
else
    datasets="${default_datasets}"
fi

# Validate everything before the first run starts.
for dataset in ${datasets}; do
    pkd_registry_name "${dataset}" >/dev/null
done
for seed in ${seeds}; do
    pkd_check_seed "${seed}"
done

# The job list: one line per run, "dataset seed".
jobs=()
for dataset in ${datasets}; do
    for seed in ${seeds}; do
        jobs+=("${dataset} ${seed}")
    done
done

run_job() { # run_job DATASET SEED
    case "${stage}" in
        teacher) bash "${here}/teacher.sh" "$1" "$2" ;;
        xd-teacher) bash "${here}/teacher.sh" "$1" "$2" cross ;;
        base2novel) bash "${here}/base2novel.sh" "$1" "$2" ;;
        table1) bash "${here}/teacher.sh" "$1" "$2" && bash "${here}/base2novel.sh" "$1" "$2" ;;
        xd) bash "${here}/xd.sh" "$1" "$2" ;;
        dg) bash "${here}/dg.sh" "$2" "$1" ;;
    esac
}

failed=()
read -r -a gpus <<<"${GPUS:-}"
if [ "${#gpus[@]}" -eq 0 ]; then
    for job in "${jobs[@]}"; do
        read -r dataset seed <<<"${job}"
        run_job "${dataset}" "${seed}" || failed+=("${job}")
    done
else
    # A small job queue: one slot per GPU; a free slot takes the next job. Job control puts
    # each worker in its own process group, so INT/TERM to the sweep stops whole workers.
    export QUIET=1
    set -m
    declare -a slot_pid=() slot_job=()
    stop_workers() {
        local p
        for p in "${slot_pid[@]}"; do
            if [ -n "${p}" ]; then
                kill -TERM -- "-${p}" 2>/dev/null || true
            fi
        done
        exit 130
    }
    trap stop_workers INT TERM
    reap() { # reap SLOT: collect a finished worker's status
        local rc=0
        wait "${slot_pid[$1]}" || rc=$?
        [ "${rc}" = 0 ] || failed+=("${slot_job[$1]}")
        pkd_log "done (exit ${rc}) on GPU ${gpus[$1]}: ${stage} ${slot_job[$1]}"
        slot_pid[$1]=""
    }
    next=0
    while [ "${next}" -lt "${#jobs[@]}" ]; do
        for slot in "${!gpus[@]}"; do
            pid="${slot_pid[${slot}]:-}"
            if [ -n "${pid}" ] && kill -0 "${pid}" 2>/dev/null; then
                continue
            fi
            if [ -n "${pid}" ]; then
                reap "${slot}"
            fi
            if [ "${next}" -ge "${#jobs[@]}" ]; then
                break
            fi
            read -r dataset seed <<<"${jobs[${next}]}"
            pkd_log "start on GPU ${gpus[${slot}]}: ${stage} ${jobs[${next}]}"
            CUDA_VISIBLE_DEVICES="${gpus[${slot}]}" run_job "${dataset}" "${seed}" &
            slot_pid[slot]=$!
            slot_job[slot]="${jobs[${next}]}"
            next=$((next + 1))
        done
        sleep 1
    done
    for slot in "${!gpus[@]}"; do
        if [ -n "${slot_pid[${slot}]:-}" ]; then
            reap "${slot}"
        fi
    done
fi

if [ "${#failed[@]}" -gt 0 ]; then
    pkd_log "${#failed[@]} run(s) failed (stage ${stage}): ${failed[*]}"
    exit 1
fi
case "${stage}" in
    table1) table_dir="${OUTPUT}/base2novel" ;;
    xd-teacher | teacher) table_dir="${TEACHERS}" ;;
    *) table_dir="${OUTPUT}/${stage}" ;;
esac
pkd_log "stage ${stage}: all ${#jobs[@]} run(s) finished; table: ${PYTHON} tools/parse_test_res.py ${table_dir}"
