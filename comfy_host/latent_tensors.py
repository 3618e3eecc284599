"""Inference tensors held by a latent format, replaced by normal ones for gradient passes.

ComfyUI's executor builds models under `torch.inference_mode()`, and with them their latent format
(comfy.latent_formats): the formats of 3-D latents keep per-channel statistics as tensors (Wan 2.1's
`latents_mean` / `latents_std` [1, 16, 1, 1, 1], used by Qwen-Image), made then as inference tensors.
`process_out` multiplies the model's prediction by them, so on the reward-gradient path (x̂0 →
process_out → VAE decode; Yoon et al., arXiv 2506.01320) autograd must save them, which it cannot do
for inference tensors. Equal normal clones, made once outside inference mode, let it.
"""

from __future__ import annotations

import torch


def make_latent_format_gradient_ready(latent_format) -> int:
    """Replace every inference-tensor attribute of `latent_format` by a normal clone; how many were replaced."""
    replaced = 0
    with torch.inference_mode(False), torch.no_grad():
        for name, value in list(vars(latent_format).items()):
            if isinstance(value, torch.Tensor) and value.is_inference():
                setattr(latent_format, name, value.clone())
                replaced += 1
    return replaced
