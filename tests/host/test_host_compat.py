"""psi-sampler on a ComfyUI outside the tested range, or lacking a symbol the pack needs.

compat_probe.py loads the pack with ComfyUI's own custom-node loader in the host's
python, after replacing the host's version and deleting ComfyUI symbols; these
tests read its JSON. The pack must load and register every node; the node that
needs a missing symbol fails when it runs, with one message that names the
symbol and the tested range.
"""

from __future__ import annotations

from host_probe import REPO, run_probe

TESTED = "0.3.64 – 0.33.0"
PSI_NODES = {"PsiInitialSampler", "PsiSMCSampler", "PsiSMCSamplerCustom", "PsiImageStatsReward", "PsiScoreImages"}


def probe(version: str, *symbols: str) -> dict:
    return run_probe("compat_probe.py", str(REPO), version, *symbols)


def test_tested_host_loads_without_warnings_and_the_node_runs():
    result = probe("0.33.0")  # the control: the same probe on an unmodified, tested host
    assert result["loaded"] and PSI_NODES <= set(result["registered"])
    assert result["error"] is None
    assert not any("outside the tested range" in line or "has no" in line for line in result["log"]), result["log"]


def test_untested_host_missing_symbols_loads_and_fails_clearly_when_a_node_runs():
    # symbols the node modules use: the sampler plumbing, T2ICount's UNet pieces, the visualizer's formats
    result = probe("9.9.0", "comfy.samplers.KSAMPLER", "comfy.samplers.SCHEDULER_NAMES",
                   "comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel",
                   "comfy.ldm.modules.diffusionmodules.openaimodel.forward_timestep_embed",
                   "comfy.ldm.modules.diffusionmodules.util.timestep_embedding", "comfy.latent_formats.Flux")
    assert result["loaded"] and PSI_NODES | {"PsiQuantityReward", "PsiParticleVisualizer"} <= set(result["registered"])
    assert sum("9.9.0 is outside the tested range 0.3.64 – 0.33.0" in line for line in result["log"]) == 1
    # the schema's scheduler list falls back, with one warning naming the symbol
    assert sum("comfy.samplers.SCHEDULER_NAMES" in line for line in result["log"]) == 1
    kind, message = result["error"]
    assert kind == "HostCompatibilityError"
    assert "comfy.samplers.KSAMPLER" in message and TESTED in message and "9.9.0" in message
