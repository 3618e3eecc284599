"""The visualizer's latent format when no model is connected, against ComfyUI's own formats.

Run by test_visualizer_formats.py with the host's python in the host's folder:
    python latent_format_probe.py PACK_DIR FIXTURE_DIR
Prints one JSON line. For SDXL-like (4-channel, scale 0.13025) and SD3-like (16-channel, shift and
scale of its own) latents decoded by tiny random-weight VAEs, it compares the visualizer's decode of a
trace that names its format with ComfyUI's `VAE.decode(format.process_out(x0))`, for the recorded
format and for the format of the same channel count that a guess from the channels would take.
"""

from __future__ import annotations

import json
import sys

from probe_setup import visualizer_and_fixtures


def main() -> None:
    visualizer, trace_class, tiny = visualizer_and_fixtures(*sys.argv[1:3])
    import torch

    import comfy.latent_formats as formats

    generator = torch.Generator().manual_seed(0)
    result = {}
    for name, same_channels in (("SDXL", "SD15"), ("SD3", "Flux")):
        recorded = getattr(formats, name)()
        vae = tiny.build_vae(recorded.latent_channels, generator)
        x0 = torch.randn((2, recorded.latent_channels, 4, 4), generator=generator)
        trace = trace_class(method="prior", latent_format=name)
        chosen = visualizer.latent_format_for(None, trace)
        ours = visualizer.vae_decode(x0, vae, chosen)
        expected = vae.decode(recorded.process_out(x0.clone())).float()
        guessed = vae.decode(getattr(formats, same_channels)().process_out(x0.clone())).float()
        result[name] = {"chosen": type(chosen).__name__,
                        "vs_recorded": float((ours - expected).abs().max()),
                        "recorded_vs_guess": float((expected - guessed).abs().max())}
    result["unnamed_is_none"] = visualizer.latent_format_for(None, trace_class(method="prior")) is None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
