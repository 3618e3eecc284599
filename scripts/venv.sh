#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install what a command needs.
# Usage: source scripts/venv.sh demo|test
# torch comes first and pinned to the CPU build this project is tested with
# (PSI_TORCH overrides, e.g. PSI_TORCH="torch==2.13.0 --index-url <your CPU index>").
# torchvision is never installed: transformers imports it whenever present.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${PSI_VENV:-$here/.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
pip_quiet=(-q --disable-pip-version-check)
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  # shellcheck disable=SC2086
  "$venv/bin/pip" install "${pip_quiet[@]}" ${PSI_TORCH:-torch==2.13.0}
fi
case "${1:-demo}" in
  demo) "$venv/bin/pip" install "${pip_quiet[@]}" numpy pillow ;;
  test) "$venv/bin/pip" install "${pip_quiet[@]}" -r "$here/requirements-dev.txt" ;;
  *) echo "usage: source scripts/venv.sh demo|test" >&2; exit 2 ;;
esac
if "$venv/bin/python" -c "import torchvision" 2>/dev/null; then
  echo "warning: torchvision is installed in $venv; transformers will import it" >&2
fi
export PSI_PYTHON="$venv/bin/python"
