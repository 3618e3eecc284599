#!/usr/bin/env bash
# README command two: install into .venv and run the whole test suite.
#
# Usage: bash scripts/test.sh [--hosts all|none|VERSION[,VERSION]] [--jobs N] [pytest arguments]
#
# tests/core, tests/rewards and tests/visualizer run once; tests/host, tests/frontend and
# tests/workflows run against each real ComfyUI host:
#   all (default)   every version in ../shared/hosts, each built by scripts/host.sh into a cache
#                   outside the repository (reused when intact);
#   VERSION,...     those versions only (e.g. --hosts 0.33.0 for a quick run);
#   none            no host: the host suites are skipped with one loud line.
# With COMFYUI_PATH set (and no --hosts), the host suites run against that ComfyUI alone
# (COMFYUI_PYTHON names its python, default $COMFYUI_PATH/.venv/bin/python).
# Test paths among the pytest arguments pick suites: each part runs the paths that belong to it.
# The optional reward backends' interpreters are built by scripts/side_env.sh unless PSI_EXTRAS_PYTHON,
# PSI_GDINO_PY_PYTHON or PSI_T2ICOUNT_PYTHON name them already (not with --hosts none); the hosts get
# the pack's optional HPSv2 extra on their PYTHONPATH from PSI_HOST_OPTIONAL (built the same way).
# The frontend tests need Debian's chromium; as root with apt-get it is installed when missing.
set -euo pipefail
{  # read whole before running: editing this file during a run cannot change the run
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${PSI_SHARED:-$here/../shared}"
hosts_spec=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --hosts) hosts_spec="${2:?--hosts needs all, none or VERSION[,VERSION]}"; shift 2 ;;
    --jobs) export PSI_TEST_JOBS="${2:?--jobs needs a number}"; shift 2 ;;
    *) break ;;
  esac
done
source "$here/scripts/venv.sh" test
cd "$here"

host_suites=(tests/host tests/frontend tests/workflows)
pure_suites=(tests/core tests/rewards tests/visualizer)
options=() pure_paths=() host_paths=()
for arg in "$@"; do
  case "$arg" in
    tests/host*|tests/frontend*|tests/workflows*) host_paths+=("$arg") ;;
    tests/*) pure_paths+=("$arg") ;;
    *) options+=("$arg") ;;
  esac
done
if [ "${#pure_paths[@]}" -eq 0 ] && [ "${#host_paths[@]}" -eq 0 ]; then
  pure_paths=("${pure_suites[@]}") host_paths=("${host_suites[@]}")
fi

# --- which hosts
declare -a host_names=() host_roots=() host_pythons=()
add_host() { host_names+=("$1"); host_roots+=("$2"); host_pythons+=("$3"); }
if [ -z "$hosts_spec" ] && [ -n "${COMFYUI_PATH:-}" ]; then
  add_host "COMFYUI_PATH" "$COMFYUI_PATH" "${COMFYUI_PYTHON:-$COMFYUI_PATH/.venv/bin/python}"
else
  hosts_spec="${hosts_spec:-all}"
  versions=()
  if [ "$hosts_spec" = "all" ]; then
    for archive in "$shared"/hosts/comfyui-*.tar.gz; do
      [ -f "$archive" ] || continue
      name="$(basename "$archive" .tar.gz)"
      versions+=("${name#comfyui-}")
    done
    if [ "${#versions[@]}" -eq 0 ] && [ "${#host_paths[@]}" -gt 0 ]; then  # else it would pass having tested no node code
      echo "no ComfyUI source archives in $shared/hosts: the host tests cannot run (set PSI_SHARED)" >&2
      exit 3
    fi
  elif [ "$hosts_spec" != "none" ]; then
    IFS=, read -r -a versions <<< "$hosts_spec"
  fi
  if [ "${#host_paths[@]}" -gt 0 ]; then
    for version in "${versions[@]+"${versions[@]}"}"; do
      root="$(bash "$here/scripts/host.sh" "$version" | tail -n 1)"
      add_host "$version" "$root" "$root/.venv/bin/python"
    done
  fi
fi

# --- what the host and optional-backend tests need besides the hosts
if [ "${#host_names[@]}" -gt 0 ] && ! command -v chromium >/dev/null && [ -z "${PSI_CHROMIUM:-}" ] \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's chromium for the frontend tests" >&2
  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >/dev/null \
    || echo "could not install chromium: the frontend tests will say they are skipped" >&2
fi
if [ "${#host_names[@]}" -gt 0 ]; then
  [ -n "${PSI_HOST_OPTIONAL:-}" ] || export PSI_HOST_OPTIONAL="$(bash "$here/scripts/side_env.sh" host-optional | tail -n 1)"
fi
if [ -z "${PSI_T2ICOUNT_CODE:-}" ] && [ -d "$shared/reference/T2ICount" ]; then
  export PSI_T2ICOUNT_CODE="$(cd "$shared/reference/T2ICount" && pwd)"
fi
if [ "$hosts_spec" != "none" ] && [ "${#pure_paths[@]}" -gt 0 ]; then
  [ -n "${PSI_EXTRAS_PYTHON:-}" ] || export PSI_EXTRAS_PYTHON="$(bash "$here/scripts/side_env.sh" extras | tail -n 1)"
  [ -n "${PSI_GDINO_PY_PYTHON:-}" ] || export PSI_GDINO_PY_PYTHON="$(bash "$here/scripts/side_env.sh" gdino | tail -n 1)"
  if [ -z "${PSI_T2ICOUNT_PYTHON:-}" ] && [ -n "${PSI_T2ICOUNT_CODE:-}" ]; then
    export PSI_T2ICOUNT_PYTHON="$(bash "$here/scripts/side_env.sh" t2icount | tail -n 1)"
  fi
fi

# --- run: each part writes a JUnit report; a summary per part and in all closes the run.
# Test servers run single-threaded, so a host part keeps about one core busy: with --jobs N (or
# PSI_TEST_JOBS) up to N parts run at once, each part's output printed whole when it ends.
reports="$(mktemp -d)"
trap 'rm -rf "$reports"' EXIT
jobs_max="${PSI_TEST_JOBS:-1}"
names=()
part() {  # NAME PYTEST_ARGS...: runs one part (exit 5, nothing collected, is no failure)
  local name="$1" rc=0
  shift
  "$PSI_PYTHON" -m pytest -q -ra --junitxml="$reports/$name.xml" "$@" "${options[@]+"${options[@]}"}" || rc=$?
  { [ "$rc" -eq 0 ] || [ "$rc" -eq 5 ]; } && echo 0 > "$reports/$name.rc" || echo "$rc" > "$reports/$name.rc"
}
start_part() {  # NAME PYTEST_ARGS...
  names+=("$1")
  if [ "$jobs_max" -le 1 ]; then
    echo "=== $1" >&2
    part "$@"
    return
  fi
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
  echo "=== $1 started" >&2
  part "$@" > "$reports/$1.log" 2>&1 &
}
if [ "${#pure_paths[@]}" -gt 0 ]; then
  start_part "core+rewards+visualizer" "${pure_paths[@]}"
fi
if [ "${#host_paths[@]}" -gt 0 ] && [ "${#host_names[@]}" -eq 0 ]; then
  COMFYUI_PATH="" start_part "host-suites-without-a-host" "${host_paths[@]}"
fi
for i in "${!host_names[@]}"; do
  COMFYUI_PATH="${host_roots[$i]}" COMFYUI_PYTHON="${host_pythons[$i]}" \
    start_part "ComfyUI-${host_names[$i]}" "${host_paths[@]}"
done
wait
status=0
for name in "${names[@]+"${names[@]}"}"; do
  if [ -f "$reports/$name.log" ]; then
    echo "=== $name" >&2
    cat "$reports/$name.log"
  fi
  [ "$(cat "$reports/$name.rc" 2>/dev/null || echo 1)" = 0 ] || status=1
done
"$PSI_PYTHON" "$here/scripts/junit_summary.py" "$reports"/*.xml || status=1
exit "$status"
}
