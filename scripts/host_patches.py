"""Make a CPU test host's own environment importable (run by scripts/host.sh with the host's python).

The package registry serves torchvision and torchaudio builds for torch 2.13 that are linked against
CUDA. With the CPU torch wheel:
- torchvision registers fake kernels for `torchvision::nms`/`qnms` unconditionally, and `import
  torchvision` fails with "operator torchvision::nms does not exist": those two registrations are made
  conditional on torchvision's ops being loaded (the other registrations already are);
- torchaudio's native library does not load (`libc10_cuda.so`) and `import torchaudio` raises: a
  library that fails to load is treated as absent, so torchaudio's pure-Python parts (which ComfyUI
  0.33 imports at start-up) work.
Both edits are to files of that host's virtual environment only, and are idempotent.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MARK = "# psi-sampler test host: guarded"


def package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).parent if spec and spec.origin else None


def patch(path: Path, old: str, new: str) -> str:
    """Replace `old` by `new` (marked) in `path`; 'patched', 'already' or raises when `old` is absent."""
    text = path.read_text()
    if MARK in text:
        return "already"
    if old not in text:
        raise SystemExit(f"host_patches: expected text not found in {path}: {old!r}")
    path.write_text(text.replace(old, new))
    return "patched"


def guard_torchvision(root: Path) -> str:
    path = root / "_meta_registrations.py"
    text = path.read_text()
    if MARK in text:
        return "already"
    for op in ("nms", "qnms"):
        old = f'@torch.library.register_fake("torchvision::{op}")'
        if old not in text:
            raise SystemExit(f"host_patches: expected text not found in {path}: {old!r}")
        text = text.replace(old, f"@(torch.library.register_fake(\"torchvision::{op}\") "
                                 f"if torchvision.extension._has_ops() else (lambda fn: fn))  {MARK}")
    path.write_text(text)
    return "patched"


def guard_torchaudio(root: Path) -> str:
    return patch(root / "_extension" / "utils.py",
                 "    torch.ops.load_library(paths[0])\n    return True\n",
                 f"    try:  {MARK}\n        torch.ops.load_library(paths[0])\n    except OSError:\n"
                 "        return False\n    return True\n")


def main() -> None:
    for name, guard in (("torchvision", guard_torchvision), ("torchaudio", guard_torchaudio)):
        root = package_dir(name)
        if root is None:
            print(f"host_patches: {name} not installed", file=sys.stderr)
            continue
        print(f"host_patches: {name}: {guard(root)}", file=sys.stderr)


if __name__ == "__main__":
    main()
