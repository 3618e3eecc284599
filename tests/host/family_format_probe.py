"""The visualizer's decode and preview of each model family's latents, against ComfyUI's own.

Run by test_families.py with the host's python in the host's folder:
    python family_format_probe.py PACK_DIR FIXTURE_DIR
Prints one JSON line {family: figures}. For each fixture family this host has, the latent format is the
one of the family's comfy.supported_models class (what the sampler records in its trace); latents of
that format's shape ([K, C, h, w], or [K, 16, 1, h, w] for Qwen-Image's Wan 2.1) are decoded by the
visualizer from a trace naming the format and compared with ComfyUI's `VAE.decode(format.process_out(x0))`
(first frame), and previewed and compared with the format's Latent2RGB factors applied by hand and with
ComfyUI's own Latent2RGB previewer for the format (what the samplers' progress previews show), given the
first particle as the pack's callbacks pass it ([1, C, h, w] or [1, C, 1, h, w]).
"""

from __future__ import annotations

import json
import sys

from probe_setup import visualizer_and_fixtures


def main() -> None:
    visualizer, trace_class, tiny = visualizer_and_fixtures(*sys.argv[1:3])
    import torch

    import numpy
    import comfy.supported_models as supported
    import latent_preview
    from comfy.cli_args import LatentPreviewMethod, args

    args.preview_method = LatentPreviewMethod.Latent2RGB

    result = {}
    for family in tiny.available_families():
        generator = torch.Generator().manual_seed(0)
        recorded = getattr(supported, tiny.SUPPORTED_CLASS[family]).latent_format()
        name = type(recorded).__name__
        frames = [1] if recorded.latent_dimensions == 3 else []
        x0 = torch.randn((2, recorded.latent_channels, *frames, 4, 4), generator=generator)
        vae = tiny.build_wan_vae(generator) if frames else tiny.build_vae(recorded.latent_channels, generator)
        chosen = visualizer.latent_format_for(None, trace_class(method="prior", latent_format=name))
        decoded = visualizer.vae_decode(x0, vae, chosen)
        expected = vae.decode(recorded.process_out(x0.clone())).float()
        expected = expected[:, 0] if expected.ndim == 5 else expected  # a 3-D VAE's [K, T, H, W, 3]: first frame
        preview = visualizer.preview_rgb(x0, chosen)
        plain = x0[:, :, 0] if frames else x0
        reshape = getattr(recorded, "latent_rgb_factors_reshape", None)  # FLUX.2: 128 channels = 32 × 2 × 2
        plain = (plain if reshape is None else reshape(plain)).movedim(1, -1)
        factors = torch.tensor(recorded.latent_rgb_factors, dtype=torch.float32)
        bias = getattr(recorded, "latent_rgb_factors_bias", None)
        by_hand = plain @ factors + (0.0 if bias is None else torch.tensor(bias, dtype=torch.float32))
        by_hand = ((by_hand + 1.0) / 2.0).clamp(0.0, 1.0)
        previewer = latent_preview.get_previewer("cpu", recorded)
        comfyui_preview = torch.from_numpy(numpy.array(previewer.decode_latent_to_preview(x0[:1]))).float() / 255.0
        result[family] = {"comfyui_preview_vs_ours": float((comfyui_preview - preview[0]).abs().max()),"format": name, "chosen": type(chosen).__name__, "latent_shape": list(x0.shape),
                          "decoded_shape": list(decoded.shape), "preview_shape": list(preview.shape),
                          "decode_vs_comfyui": float((decoded - expected).abs().max()),
                          "preview_vs_factors": float((preview - by_hand).abs().max())}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
