#!/usr/bin/env bash
# Build (or reuse) a CPU test host: ComfyUI <version> from ../shared/hosts/comfyui-<version>.tar.gz,
# unpacked into a cache folder outside the repository, with its own virtual environment.
#
# Usage: bash scripts/host.sh VERSION        prints the host's folder on its last line (exit 0),
#                                            or says why it cannot be built (exit 3: no source).
# Cache: $(psi_cache_root)/hosts/comfyui-<version> (see cached_env.sh). A host is reused when its
# stamp matches the source archive and this recipe; anything else is rebuilt.
#
# Everything here happens inside the host's own environment, never in the project's:
# - torch is installed first and pinned (PSI_HOST_TORCH, default torch==2.13.0, the CPU wheel);
# - the registry's torchvision and torchaudio are CUDA builds: host_patches.py guards the parts
#   that fail with CPU torch;
# Nothing the tests need beyond what the host installs is added (the websocket is driven with aiohttp).
set -euo pipefail
{  # read whole before running: editing this file during a run cannot change the run
version="${1:?usage: scripts/host.sh VERSION}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/cached_env.sh"
shared="${PSI_SHARED:-$here/../shared}"
archive="$shared/hosts/comfyui-$version.tar.gz"
if [ ! -f "$archive" ]; then
  echo "no ComfyUI source for $version at $archive" >&2
  exit 3
fi
cache="$(psi_cache_root)/hosts"
host="$cache/comfyui-$version"
torch_spec="${PSI_HOST_TORCH:-torch==2.13.0}"
stamp="$(sha256sum "$archive" | cut -c1-16) $(psi_recipe "${BASH_SOURCE[0]}" "$here/scripts/cached_env.sh" \
  "$here/scripts/host_patches.py") $torch_spec"
if psi_env_ready "$host" "$stamp" && [ -f "$host/main.py" ]; then
  echo "$host"
  exit 0
fi

echo "building ComfyUI $version test host in $host (2-4 minutes)" >&2
rm -rf "$host"  # built in place: a virtual environment does not survive a move
mkdir -p "$cache"
tar -xzf "$archive" -C "$cache"
psi_new_venv "$host" "$torch_spec"
psi_pip "$host" -r "$host/requirements.txt"
# 0.3.64's server imports requests without listing it: it came with transformers 4's hub client, and
# transformers 5's does not bring it
"$host/.venv/bin/python" -c "import requests" 2>/dev/null || psi_pip "$host" requests
"$host/.venv/bin/python" "$here/scripts/host_patches.py"
# the host must import its own modules as main.py does before it counts as built
(cd "$host" && "$host/.venv/bin/python" - <<'PY'
import sys
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import utils.extra_config  # noqa: F401  (main.py imports it before nodes)
import nodes  # noqa: F401
import comfy.sd  # noqa: F401
import server  # noqa: F401  (what main.py serves with)
PY
)
echo "$stamp" > "$host/.psi-stamp"
echo "$host"
}
