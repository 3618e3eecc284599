#!/usr/bin/env bash
# Helpers for the test environments built outside the repository (sourced by host.sh and side_env.sh).
# A folder counts as built only when its stamp file holds the expected stamp; the stamp is written last,
# so an interrupted build is never taken for a finished one.

# The cache root: $PSI_HOST_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/psi-sampler.
psi_cache_root() {
  echo "${PSI_HOST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/psi-sampler}"
}

# psi_env_ready DIR STAMP: whether DIR is a finished build with STAMP and a python.
psi_env_ready() {
  [ -f "$1/.psi-stamp" ] && [ "$(cat "$1/.psi-stamp")" = "$2" ] && [ -x "$1/.venv/bin/python" ]
}

# psi_new_venv DIR TORCH_SPEC: a fresh virtual environment at DIR/.venv with torch installed first and
# pinned (an unpinned torch pulls gigabytes of CUDA packages); leaves DIR/.psi-constraints.txt pinning it.
psi_new_venv() {
  "${PYTHON:-python3}" -m venv "$1/.venv"
  # shellcheck disable=SC2086
  "$1/.venv/bin/python" -m pip -q --disable-pip-version-check install $2
  echo "$2" | sed 's/ .*//' > "$1/.psi-constraints.txt"
}

# psi_pip DIR ARGS...: pip install into DIR's environment under its torch constraint.
psi_pip() {
  local dir="$1"; shift
  "$dir/.venv/bin/python" -m pip -q --disable-pip-version-check install -c "$dir/.psi-constraints.txt" "$@"
}

# psi_recipe FILE...: a short hash of the files that make a build (a changed recipe rebuilds).
psi_recipe() {
  cat "$@" | sha256sum | cut -c1-16
}
