#!/usr/bin/env bash
# Shared by scripts/test.sh and scripts/demo.sh (sourced): create the virtual environment on
# first use and (re)install a requirements file when it changed since the last install.
#   pkd_ensure_venv REQUIREMENTS_FILE...   sets PKD_PY to the venv's python
# Environment: VENV (default .venv), PYTHON (interpreter creating the venv, default python3).

pkd_ensure_venv() {
    local venv="${VENV:-.venv}" py="${PYTHON:-python3}"
    if [ ! -x "${venv}/bin/python" ]; then
        echo "[setup] creating ${venv} with $(${py} --version 2>&1)" >&2
        "${py}" -m venv "${venv}"
    fi
    local stamp="${venv}/.requirements.sha" want
    want="$(cat "$@" | sha256sum | cut -d' ' -f1)"
    if [ ! -f "${stamp}" ] || ! grep -qx "${want}" "${stamp}"; then
        echo "[setup] installing $* into ${venv} (first run: about a minute)" >&2
        "${venv}/bin/python" -m pip install -q --upgrade pip
        local req
        for req in "$@"; do
            "${venv}/bin/python" -m pip install -q -r "${req}"
        done
        echo "${want}" >>"${stamp}"
    fi
    # shellcheck disable=SC2034  # read by the sourcing script
    PKD_PY="${venv}/bin/python"
}
