#!/usr/bin/env bash
# README command two: install into .venv and run the whole test suite.
# Host tests run against a real ComfyUI when COMFYUI_PATH points at one (its own
# virtual environment at $COMFYUI_PATH/.venv, or COMFYUI_PYTHON); otherwise they
# are skipped with one loud line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/venv.sh" test
cd "$here"
exec "$PSI_PYTHON" -m pytest -q -ra "$@" tests
