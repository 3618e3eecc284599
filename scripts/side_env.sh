#!/usr/bin/env bash
# Build (or reuse) an interpreter of its own for an optional reward backend whose packages cannot live
# in the project's test environment (which has transformers >= 5 and no torchvision). Built from the
# package registry into a cache folder outside the repository (see cached_env.sh).
#
# Usage: bash scripts/side_env.sh NAME      prints the interpreter's path on its last line
#   extras    torchvision, open_clip_torch (HPSv2) and image-reward 1.5 with transformers <= 4.55
#             (image-reward pins timm 0.6.13, open_clip needs timm >= 1: it is installed without its
#             pins; only its scoring modules are imported);
#   gdino     groundingdino-py 0.4.0 with transformers < 5;
#   t2icount  einops, to run the T2ICount authors' classes as a test oracle;
#   host-optional  not an interpreter but a folder of packages for a test host's PYTHONPATH: the pack's
#             documented optional extra for HPSv2 (open_clip_torch, with timm, ftfy, wcwidth; pure Python,
#             nothing else the host has is replaced), so the host itself stays as ComfyUI installs it.
#             Prints the folder.
#   host-kitchen  a folder for a test host's PYTHONPATH holding comfy-kitchen $PSI_HOST_KITCHEN (default
#             0.2.40, the newest on the registry in December 2026; ComfyUI 0.33.0 pins 0.2.31), which then
#             takes the place of the host's own: the kitchen variant of the 0.33 host that
#             tests/host/test_kitchen_gradients.py runs. Binary wheel: run with PYTHON set to the host's
#             python (same interpreter version). Prints the folder.
# The registry's torchvision is a CUDA build: host_patches.py guards it, as in the test hosts.
set -euo pipefail
{  # read whole before running: editing this file during a run cannot change the run
name="${1:?usage: scripts/side_env.sh extras|gdino|t2icount|host-optional|host-kitchen}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/cached_env.sh"
torch_spec="${PSI_HOST_TORCH:-torch==2.13.0}"
base=(numpy pillow "safetensors>=0.4" pytest)
case "$name" in
  extras)   packages=(torchvision open_clip_torch "transformers>=4.46,<=4.55" fairscale==0.4.13 huggingface-hub)
            unpinned=(image-reward==1.5) ;;
  gdino)    packages=(groundingdino-py==0.4.0 "transformers>=4.46,<5"); unpinned=() ;;
  t2icount) packages=(einops); unpinned=() ;;
  host-optional) packages=(open_clip_torch timm ftfy wcwidth); unpinned=() ;;
  host-kitchen) packages=("comfy-kitchen==${PSI_HOST_KITCHEN:-0.2.40}"); unpinned=() ;;
  *) echo "unknown side environment '$name' (extras, gdino, t2icount, host-optional, host-kitchen)" >&2; exit 2 ;;
esac
dir="$(psi_cache_root)/side/$name"
# this environment's own recipe: another one's change does not rebuild it
stamp="$(printf '%s\n' "$name" "${base[@]}" "${packages[@]}" "${unpinned[@]+"${unpinned[@]}"}" \
  | cat - "$here/scripts/cached_env.sh" "$here/scripts/host_patches.py" | sha256sum | cut -c1-16) $torch_spec"
if [ "$name" = host-optional ] || [ "$name" = host-kitchen ]; then
  if [ "$(cat "$dir/.psi-stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    "${PYTHON:-python3}" -m pip -q --disable-pip-version-check install --no-deps --target "$dir/site" "${packages[@]}"
    echo "$stamp" > "$dir/.psi-stamp"
  fi
  echo "$dir/site"
  exit 0
fi
if psi_env_ready "$dir" "$stamp"; then
  echo "$dir/.venv/bin/python"
  exit 0
fi
echo "building the '$name' side interpreter in $dir (1-3 minutes)" >&2
rm -rf "$dir"
mkdir -p "$dir"
psi_new_venv "$dir" "$torch_spec"
psi_pip "$dir" "${base[@]}" "${packages[@]}"
if [ "${#unpinned[@]}" -gt 0 ]; then
  psi_pip "$dir" --no-deps "${unpinned[@]}"
fi
"$dir/.venv/bin/python" "$here/scripts/host_patches.py"
echo "$stamp" > "$dir/.psi-stamp"
echo "$dir/.venv/bin/python"
}
