"""Tiny random-weight models built with ComfyUI's own classes (test-only).

SD1.5-like UNet (EPS), FLUX-like DiT and Lumina 2-like NextDiT (flow, CONST; the
NextDiT with q/k RMSNorm, which ComfyUI 0.33 fuses with RoPE in a comfy-kitchen op
outside training) with AutoencoderKL VAEs for
4- and 16-channel latents (/8 downscale), plus their conditioning. ComfyUI's ops
skip weight initialisation, so every parameter is set by hand from a seeded
generator. Built inside a node, the weights are inference tensors, like the
weights of ComfyUI's own loaders.
"""

from __future__ import annotations

import dataclasses

import torch

import comfy.ldm.flux.model
import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.sd
import comfy.supported_models
from comfy.ldm.models.autoencoder import AutoencoderKL

FAMILIES = ("sd15", "sd15v", "flux", "lumina2")

SD15_UNET = {
    "use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 32,
    "num_res_blocks": [1, 1], "channel_mult": [1, 2], "transformer_depth": [1, 1],
    "transformer_depth_output": [1, 1, 1, 1], "transformer_depth_middle": 1, "context_dim": 32,
    "use_spatial_transformer": True, "legacy": False, "adm_in_channels": None,
    "use_linear_in_transformer": False, "use_temporal_attention": False, "use_temporal_resblock": False,
    "dtype": torch.float32,
}

FLUX_DIT = {
    "image_model": "flux", "guidance_embed": True, "in_channels": 16, "out_channels": 16, "patch_size": 2,
    "vec_in_dim": 32, "context_in_dim": 32, "hidden_size": 64, "mlp_ratio": 4.0, "num_heads": 2,
    "depth": 1, "depth_single_blocks": 1, "axes_dim": [8, 12, 12], "theta": 10000, "qkv_bias": True,
    "dtype": torch.float32,
}

# keys that ComfyUI 0.3.64's NextDiT accepts too (0.33 added rope_theta and others with defaults)
LUMINA2_DIT = {
    "image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 64, "n_layers": 1, "n_refiner_layers": 1,
    "n_heads": 2, "n_kv_heads": 2, "multiple_of": 16, "ffn_dim_multiplier": 4.0, "norm_eps": 1e-5, "qk_norm": True,
    "cap_feat_dim": 32, "axes_dims": [8, 12, 12], "axes_lens": [64, 64, 64], "dtype": torch.float32,
}

WEIGHT_STD = 0.2


def flux_config() -> dict:
    """FLUX_DIT for this host: ComfyUI 0.33 made `FluxParams.txt_ids_dims` a required field
    (`[]` for FLUX.1, as comfy/model_detection.py sets it); 0.3.64 has no such field."""
    fields = {f.name for f in dataclasses.fields(comfy.ldm.flux.model.FluxParams)}
    return {**FLUX_DIT, "txt_ids_dims": []} if "txt_ids_dims" in fields else dict(FLUX_DIT)


def init_weights_(module: torch.nn.Module, generator: torch.Generator, std: float = WEIGHT_STD) -> None:
    """Norm scales 1, biases 0, other weights N(0, std²)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and ("norm" in name or name.endswith(".scale")) and not name.endswith("bias"):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=generator) * std)


def vae_config(latent_channels: int) -> dict:
    return {"params": {"embed_dim": latent_channels, "ddconfig": {
        "double_z": True, "z_channels": latent_channels, "resolution": 64, "in_channels": 3, "out_ch": 3,
        "ch": 32, "ch_mult": [1, 2, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}}}


def build_vae(latent_channels: int, generator: torch.Generator) -> comfy.sd.VAE:
    config = vae_config(latent_channels)
    autoencoder = AutoencoderKL(**config["params"])
    init_weights_(autoencoder, generator)
    vae = comfy.sd.VAE(sd=autoencoder.state_dict(), config=config)
    vae.latent_channels = latent_channels  # VAE(config=...) keeps 4 otherwise
    return vae


def _patcher(model) -> comfy.model_patcher.ModelPatcher:
    return comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=comfy.model_management.unet_offload_device())


def build(family: str, seed: int):
    """(MODEL, VAE, positive, negative) for "sd15" (EPS), "sd15v" (the same UNet with
    V-prediction, as SD2.x-768 checkpoints), "flux" or "lumina2" (flow)."""
    generator = torch.Generator().manual_seed(int(seed))
    if family in ("sd15", "sd15v"):
        config = comfy.supported_models.SD15(dict(SD15_UNET))
        if family == "sd15v":
            model = comfy.model_base.BaseModel(config, model_type=comfy.model_base.ModelType.V_PREDICTION)
        else:
            model = config.get_model({})
        init_weights_(model.diffusion_model, generator)
        context = torch.randn((1, 7, 32), generator=generator)
        positive = [[context, {}]]
        negative = [[context * 0.25, {}]]
        channels = 4
    elif family == "flux":
        model = comfy.supported_models.Flux(flux_config()).get_model({})
        init_weights_(model.diffusion_model, generator)
        text = torch.randn((1, 5, 32), generator=generator)
        pooled = torch.randn((1, 32), generator=generator)
        positive = [[text, {"pooled_output": pooled, "guidance": 3.5}]]
        negative = [[torch.zeros_like(text), {"pooled_output": torch.zeros_like(pooled), "guidance": 3.5}]]
        channels = 16
    elif family == "lumina2":
        model = comfy.supported_models.Lumina2(dict(LUMINA2_DIT)).get_model({})
        init_weights_(model.diffusion_model, generator)
        text = torch.randn((1, 5, 32), generator=generator)
        mask = torch.ones((1, 5), dtype=torch.long)  # 0.3.64 takes num_tokens only from the text encoder's mask
        positive = [[text, {"attention_mask": mask}]]
        negative = [[text * 0.25, {"attention_mask": mask}]]
        channels = 16
    else:
        raise ValueError(f"family must be one of {FAMILIES}; got {family!r}")
    return _patcher(model), build_vae(channels, generator), positive, negative
