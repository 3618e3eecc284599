"""psi-sampler on a ComfyUI outside the tested range, or lacking a symbol the pack needs.

compat_probe.py loads the pack with ComfyUI's own custom-node loader in the host's
python, after replacing the host's version and deleting ComfyUI symbols; these
tests read its JSON. The pack must load and register every node; the node that
needs a missing symbol fails when it runs, with one message that names the
symbol and the tested range.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import REPO, host_location

PROBE = Path(__file__).resolve().parent / "compat_probe.py"
TESTED = "0.3.64 – 0.33.0"
PSI_NODES = {"PsiInitialSampler", "PsiSMCSampler", "PsiSMCSamplerCustom", "PsiImageStatsReward", "PsiScoreImages"}


def probe(version: str, *symbols: str) -> dict:
    root, python, reason = host_location()
    assert reason is None, reason
    done = subprocess.run([str(python), str(PROBE), str(REPO), version, *symbols], cwd=root, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_tested_host_loads_without_warnings_and_the_node_runs():
    result = probe("0.33.0")  # the control: the same probe on an unmodified, tested host
    assert result["loaded"] and PSI_NODES <= set(result["registered"])
    assert result["error"] is None
    assert not any("outside the tested range" in line or "has no" in line for line in result["log"]), result["log"]


def test_untested_host_missing_symbols_loads_and_fails_clearly_when_a_node_runs():
    result = probe("9.9.0", "comfy.samplers.KSAMPLER", "comfy.samplers.SCHEDULER_NAMES")
    assert result["loaded"] and PSI_NODES <= set(result["registered"])
    assert sum("9.9.0 is outside the tested range 0.3.64 – 0.33.0" in line for line in result["log"]) == 1
    # the schema's scheduler list falls back, with one warning naming the symbol
    assert sum("comfy.samplers.SCHEDULER_NAMES" in line for line in result["log"]) == 1
    kind, message = result["error"]
    assert kind == "HostCompatibilityError"
    assert "comfy.samplers.KSAMPLER" in message and TESTED in message and "9.9.0" in message
