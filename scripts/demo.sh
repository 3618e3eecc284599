#!/usr/bin/env bash
# README command one: install into .venv and run the Figure-1 comparison on the exact-target toy.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/venv.sh" demo
cd "$here"
exec "$PSI_PYTHON" -m psi_core.toy.demo "$@"
