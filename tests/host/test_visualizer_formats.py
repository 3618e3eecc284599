"""The Ψ Particle Visualizer decodes a trace with the latent format its sampler recorded.

Without a MODEL input the visualizer used to guess the format from the channel count (4: SD1.5,
16: FLUX), which decodes SDXL latents (another scale) and SD3 latents (another shift and scale)
wrongly. latent_format_probe.py checks, in the host's python with ComfyUI's own latent formats and
tiny VAEs, that a trace naming SDXL or SD3 is decoded exactly as ComfyUI decodes that format, and
that the channel-count guess would have decoded it differently.
"""

from __future__ import annotations

from host_probe import FIXTURE_PACK, REPO, run_probe

#: the same computation on the same inputs: equal to float32 round-off of the decoder
SAME = 1e-5
#: a wrong scale or shift moves decoded pixels by far more than this (images lie in [0, 1])
DIFFERENT = 1e-2


def test_recorded_sdxl_and_sd3_formats_decode_as_comfyui_decodes_them():
    result = run_probe("latent_format_probe.py", str(REPO), str(FIXTURE_PACK))
    for name in ("SDXL", "SD3"):
        figures = result[name]
        assert figures["chosen"] == name, figures
        assert figures["vs_recorded"] <= SAME, figures
        assert figures["recorded_vs_guess"] > DIFFERENT, figures  # the guess would have been wrong
    assert result["unnamed_is_none"]  # a trace that names no format is never guessed
