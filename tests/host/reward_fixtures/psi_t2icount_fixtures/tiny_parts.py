"""Shapes of the tiny SD1.5-like parts of the T2ICount host tests (plain torch; no ComfyUI import).

The UNet keeps SD1.5's layout (four levels of two residual blocks, attention on the
first three, 8 heads, 4-channel latents) at 1/10 of its widths; the text encoder is
CLIP-L-shaped with 32-wide states and CLIP-L's vocabulary (ComfyUI's SD1 tokenizer).
"""

from __future__ import annotations

import torch

TEXT_WIDTH = 32
MODEL_CHANNELS = 32
CHANNEL_MULT = (1, 2, 4, 4)
HEAD_WIDTHS = tuple(MODEL_CHANNELS * m for m in CHANNEL_MULT)
HEAD_INNER = 16

UNET_CONFIG = {
    "use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4,
    "model_channels": MODEL_CHANNELS, "num_res_blocks": [2, 2, 2, 2], "channel_mult": list(CHANNEL_MULT),
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "transformer_depth_middle": 1, "context_dim": TEXT_WIDTH, "use_spatial_transformer": True, "legacy": False,
    "adm_in_channels": None, "use_linear_in_transformer": False, "use_temporal_attention": False,
    "use_temporal_resblock": False, "num_heads": 8, "num_head_channels": -1,
}


def clip_config() -> dict:
    return {"architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
            "eos_token_id": 49407, "hidden_act": "quick_gelu", "hidden_size": TEXT_WIDTH, "initializer_factor": 1.0,
            "initializer_range": 0.02, "intermediate_size": 2 * TEXT_WIDTH, "layer_norm_eps": 1e-5,
            "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 2,
            "num_hidden_layers": 1, "pad_token_id": 1, "projection_dim": TEXT_WIDTH, "vocab_size": 49408}


def init_weights_(module: torch.nn.Module, generator: torch.Generator, std: float) -> None:
    """Norm scales 1, biases 0, other weights N(0, std²) scaled by 1/sqrt(fan-in)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                fan_in = p[0].numel() if p.ndim > 1 else 1
                p.copy_(torch.randn(p.shape, generator=generator) * std / fan_in ** 0.5)
