"""Reward packages that cannot live in the test venv run in an interpreter of their own.

The test venv has no torchvision (the registry's build breaks on CPU torch) and has
transformers >= 5, so optional backends that need either are exercised through a
separate Python named by an environment variable:

* PSI_EXTRAS_PYTHON   — an interpreter with torchvision and the optional held-out scorer
                        packages (open_clip_torch, image-reward), e.g. a copy of the host's venv;
* PSI_GDINO_PY_PYTHON — an interpreter with groundingdino-py and transformers < 5;
* PSI_T2ICOUNT_PYTHON / PSI_T2ICOUNT_CODE — an interpreter with einops and a checkout of the
                        T2ICount authors' code, for the comparisons with their classes.

A test runs a script there that loads this pack as the package `psi_sampler` and prints
one line `RESULT <json>`; the test asserts on that object. Where the variable is unset
the tests are skipped and one loud line says so at the end of the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PURPOSE = {
    "PSI_EXTRAS_PYTHON": "an interpreter with torchvision, open_clip_torch and image-reward",
    "PSI_GDINO_PY_PYTHON": "an interpreter with groundingdino-py and transformers < 5",
    "PSI_T2ICOUNT_PYTHON": "an interpreter with einops, and PSI_T2ICOUNT_CODE to a checkout of the authors' "
                           "T2ICount code (the head and UNet are compared with theirs)",
}

PRELUDE = f"""
import importlib.util, json, sys
sys.path.insert(0, {str(ROOT)!r})
_spec = importlib.util.spec_from_file_location(
    "psi_sampler", {str(ROOT / "__init__.py")!r}, submodule_search_locations=[{str(ROOT)!r}])
_pack = importlib.util.module_from_spec(_spec)
sys.modules["psi_sampler"] = _pack
_spec.loader.exec_module(_pack)
def report(obj):
    print("RESULT " + json.dumps(obj), flush=True)
"""


def external_python(var: str) -> tuple[Path | None, str | None]:
    """(interpreter, None) or (None, why the tests that need it are skipped)."""
    value = os.environ.get(var)
    if not value:
        return None, f"{var} is not set"
    path = Path(value)
    if not path.exists():
        return None, f"{var}={value} does not exist"
    return path, None


def skip_line(var: str, reason: str) -> str:
    return f"OPTIONAL-BACKEND TESTS SKIPPED ({reason}): set {var} to {PURPOSE[var]}"


def require_python(var: str) -> Path:
    """The interpreter named by `var`, or skip the calling test."""
    python, reason = external_python(var)
    if python is None:
        pytest.skip(skip_line(var, reason))
    return python


def run_script(python: Path, body: str, *, timeout: float = 900, tmp_path: Path | None = None) -> dict:
    """Run `body` (after the prelude that imports the pack) under `python`; returns its RESULT."""
    source = PRELUDE + "\n" + textwrap.dedent(body)
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    proc = subprocess.run([str(python), "-c", source], cwd=str(tmp_path or ROOT), env=env,
                          capture_output=True, text=True, timeout=timeout)
    results = [line[len("RESULT "):] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not results:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise AssertionError(f"script under {python} failed (exit {proc.returncode}); see output above")
    return json.loads(results[-1])
