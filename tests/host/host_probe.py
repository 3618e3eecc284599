"""Run a probe script with the host's python in the host's folder; its last stdout line is JSON."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from host_graphs import host_conftest

HERE = Path(__file__).resolve().parent
REPO, FIXTURE_PACK = host_conftest().REPO, host_conftest().FIXTURE_PACK


def run_probe(script: str, *args: str, timeout: float = 300.0, python_path: Path | None = None) -> dict:
    """python_path: a folder put on the probe's PYTHONPATH (ahead of the host's own packages)."""
    root, python, reason = host_conftest().host_location()  # pytest loads conftest under its own name
    assert reason is None, reason
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"PYTHONPATH": str(python_path)} if python_path else {})}
    done = subprocess.run([str(python), str(HERE / script), *args], cwd=root, capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
