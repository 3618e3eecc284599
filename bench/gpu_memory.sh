#!/usr/bin/env bash
# GPU memory benchmark (bench/gpu_memory.py) on a CUDA machine without network, in under 10 minutes.
#
# Usage: bash bench/gpu_memory.sh [--smoke]
#   PSI_SHARED   folder holding hosts/comfyui-0.33.0.tar.gz (default: ../shared, else ./shared)
#   PSI_WHEELS   folder of wheels for what the machine's python lacks (default: $PSI_SHARED/wheels);
#                installed with --no-index, never from the network
#   PSI_PYTHON   a python whose torch sees CUDA (default: python3)
#   PSI_GPU_WORK where the host is unpacked and its venv built (default: /tmp/psi-gpu)
#   OUT          folder for gpu_memory.md and the log (default: ./out)
# The host venv is made with --system-site-packages, so the machine's CUDA torch is used as it is;
# ComfyUI's requirements are installed only from PSI_WHEELS (missing ones are listed, and the run goes on:
# the benchmark imports only what ComfyUI's core needs).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${PSI_SHARED:-}"
if [ -z "$shared" ]; then
  for candidate in "$here/../shared" "$here/shared"; do
    [ -f "$candidate/hosts/comfyui-0.33.0.tar.gz" ] && { shared="$candidate"; break; }
  done
fi
archive="$shared/hosts/comfyui-0.33.0.tar.gz"
[ -f "$archive" ] || { echo "no hosts/comfyui-0.33.0.tar.gz under PSI_SHARED, ../shared or ./shared" >&2; exit 2; }
wheels="${PSI_WHEELS:-$shared/wheels}"
python="${PSI_PYTHON:-python3}"
work="${PSI_GPU_WORK:-/tmp/psi-gpu}"
out="${OUT:-$here/out}"
mkdir -p "$work" "$out"
start=$(date +%s)

"$python" -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.cuda.is_available()); \
sys.exit(0 if torch.cuda.is_available() or '--smoke' in sys.argv else 3)" "$@" \
  || { echo "$python has no CUDA torch (set PSI_PYTHON)" >&2; exit 3; }

root="$work/comfyui-0.33.0"
[ -f "$root/main.py" ] || tar -xzf "$archive" -C "$work"
venv="$work/venv"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv --system-site-packages "$venv"
  # torch may live in a venv of its own: make PSI_PYTHON's site-packages visible too
  base_sites=$("$python" -c "import site, sysconfig; print('\n'.join({*site.getsitepackages(), sysconfig.get_paths()['purelib']}))")
  venv_site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  echo "$base_sites" > "$venv_site/_psi_base_python.pth"
fi
# ComfyUI's requirements that are not importable yet, without torch (the machine's is kept)
missing=$("$venv/bin/python" - "$root/requirements.txt" <<'EOF'
import importlib.util, re, sys
names = {"pyyaml": "yaml", "pillow": "PIL", "comfyui-frontend-package": None, "comfyui-workflow-templates": None,
         "comfyui-embedded-docs": None, "torch": None, "torchvision": None, "torchaudio": None,
         "comfy-kitchen": "comfy_kitchen", "comfy-aimdo": "comfy_aimdo", "alembic": "alembic",
         "sqlalchemy": "sqlalchemy", "scipy": "scipy", "psutil": "psutil"}
for line in open(sys.argv[1]):
    name = re.split(r"[<>=!~;\[ ]", line.strip())[0].lower()
    if not name or name.startswith("#"):
        continue
    module = names.get(name, name.replace("-", "_"))
    if module and importlib.util.find_spec(module) is None:
        print(line.strip())
EOF
)
if [ -n "$missing" ]; then
  if [ -d "$wheels" ]; then
    echo "installing from $wheels: $(echo $missing | tr '\n' ' ')"
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pip install -q --no-index --find-links "$wheels" $missing \
      || echo "some requirements are not in $wheels; going on without them" >&2
  else
    echo "not installed and no wheels folder ($wheels): $(echo $missing | tr '\n' ' ')" >&2
  fi
fi
echo "host ready after $(( $(date +%s) - start )) s"
budget=$(( 560 - ($(date +%s) - start) ))
cd "$root"
PYTHONPATH="$root:$here" timeout "$budget" "$venv/bin/python" "$here/bench/gpu_memory.py" --comfy "$root" \
  --out "$out/gpu_memory.md" --budget-s $(( budget / 3 )) "$@" 2>&1 | tee "$out/gpu_memory.log"
