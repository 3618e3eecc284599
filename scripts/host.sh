#!/usr/bin/env bash
# Build (or reuse) a CPU test host: ComfyUI <version> from ../shared/hosts/comfyui-<version>.tar.gz,
# unpacked into a cache folder outside the repository, with its own virtual environment.
#
# Usage: bash scripts/host.sh VERSION        prints the host's folder on its last line (exit 0),
#                                            or says why it cannot be built (exit 3: no source).
# Cache: $PSI_HOST_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/psi-sampler/hosts). A host is
# reused when its stamp matches the source archive and this recipe; anything else is rebuilt.
#
# Everything here happens inside the host's own environment, never in the project's:
# - torch is installed first and pinned (PSI_HOST_TORCH, default torch==2.13.0, the CPU wheel):
#   an unpinned torch pulls gigabytes of CUDA packages;
# - the registry's torchvision is a CUDA build whose fake-op registrations of nms/qnms fail
#   against CPU torch: those registrations are guarded;
# - its torchaudio's native library does not load with CPU torch: the load is guarded, so the
#   pure-Python parts that ComfyUI imports at start-up (0.33) still work.
# Nothing the tests need beyond what the host installs is added (the websocket is driven with aiohttp).
set -euo pipefail
version="${1:?usage: scripts/host.sh VERSION}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${PSI_SHARED:-$here/../shared}"
archive="$shared/hosts/comfyui-$version.tar.gz"
if [ ! -f "$archive" ]; then
  echo "no ComfyUI source for $version at $archive" >&2
  exit 3
fi
cache="${PSI_HOST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/psi-sampler/hosts}"
host="$cache/comfyui-$version"
torch_spec="${PSI_HOST_TORCH:-torch==2.13.0}"
recipe="$(cat "${BASH_SOURCE[0]}" "$here/scripts/host_patches.py" | sha256sum | cut -c1-16)"
stamp="$(sha256sum "$archive" | cut -c1-16) $recipe $torch_spec"

if [ -f "$host/.psi-host-stamp" ] && [ "$(cat "$host/.psi-host-stamp")" = "$stamp" ] \
   && [ -x "$host/.venv/bin/python" ] && [ -f "$host/main.py" ]; then
  echo "$host"
  exit 0
fi

echo "building ComfyUI $version test host in $host (2-4 minutes)" >&2
# built in place (a virtual environment does not survive a move); the stamp is written last, so an
# interrupted build is never taken for a finished one
rm -rf "$host"
mkdir -p "$cache"
tar -xzf "$archive" -C "$cache"
src="$host"
python="${PYTHON:-python3}"
"$python" -m venv "$src/.venv"
pip=("$src/.venv/bin/python" -m pip -q --disable-pip-version-check)
# shellcheck disable=SC2086
"${pip[@]}" install $torch_spec
echo "$torch_spec" | sed 's/ .*//' > "$src/.psi-constraints.txt"
"${pip[@]}" install -r "$src/requirements.txt" -c "$src/.psi-constraints.txt"
"$src/.venv/bin/python" "$here/scripts/host_patches.py" "$src/.venv/bin/python"
# the host must import its own modules as main.py does before it counts as built
(cd "$src" && "$src/.venv/bin/python" - <<'EOF'
import sys
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import utils.extra_config  # noqa: F401  (main.py imports it before nodes)
import nodes  # noqa: F401
import comfy.sd  # noqa: F401
EOF
)
echo "$stamp" > "$host/.psi-host-stamp"
echo "$host"
