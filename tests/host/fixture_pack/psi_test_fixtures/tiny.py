"""Tiny random-weight models built with ComfyUI's own classes (test-only).

Each family is built from its `comfy.supported_models` class with a config a few
channels and blocks wide, as ComfyUI's loaders build the real ones:

  sd15, sd15v    SD1.5 UNet (EPS; V-prediction as SD2.x-768)
  sdxl           SDXL UNet (EPS) with the pooled ADM vector (pooled text + size embeddings)
  sd3            SD3.5-style MMDiT (flow): joint attention, q/k RMSNorm, x-block self-attention
  flux           FLUX.1-dev DiT (flow) with the guidance embedding
  flux_schnell   FLUX.1-schnell DiT (flow, no guidance embedding, shift 1)
  chroma         Chroma (flow): FLUX blocks modulated by the distilled-guidance approximator
  lumina2        Lumina 2 NextDiT (flow): q/k RMSNorm, which ComfyUI 0.33 fuses with RoPE
                 in a comfy-kitchen op outside training
  zimage         Z-Image NextDiT (flow, Z-Image modulation; hosts with supported_models.ZImage)
  ernie          ERNIE-Image DiT (flow, shared AdaLN; hosts with supported_models.ErnieImage): q/k
                 RMSNorm and split-half RoPE, which ComfyUI 0.33 runs in comfy-kitchen ops (fused
                 outside training, apply_rope_split_half always); 128-channel latents (FLUX.2's
                 format) decoded by a 128-channel AutoencoderKL at /8 (the real VAE is FLUX.2's)
  qwen_image     Qwen-Image MMDiT (flow) on 5-D Wan 2.1 latents [B, 16, 1, H, W], with a tiny
                 Wan 2.1 causal-3-D VAE
  no_backward    the sd15 UNet behind an op without backward (no_backward.py)

with AutoencoderKL VAEs for 4- and 16-channel latents (/8 downscale), plus their
conditioning. ComfyUI's ops skip weight initialisation, so every parameter is set
by hand from a seeded generator. Built inside a node, the weights are inference
tensors, like the weights of ComfyUI's own loaders.
"""

from __future__ import annotations

import dataclasses
import inspect

import torch

import comfy.ldm.chroma.model
import comfy.ldm.flux.model
import comfy.ldm.wan.vae
import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.sd
import comfy.supported_models
from comfy.ldm.models.autoencoder import AutoencoderKL

from . import no_backward

FAMILIES = ("sd15", "sd15v", "sdxl", "sd3", "flux", "flux_schnell", "chroma", "lumina2", "zimage", "qwen_image",
            "ernie", "no_backward")

#: the comfy.supported_models class each family is built from (absent on some hosts: see available_families)
SUPPORTED_CLASS = {"sd15": "SD15", "sd15v": "SD15", "sdxl": "SDXL", "sd3": "SD3", "flux": "Flux",
                   "flux_schnell": "FluxSchnell", "chroma": "Chroma", "lumina2": "Lumina2", "zimage": "ZImage",
                   "qwen_image": "QwenImage", "ernie": "ErnieImage", "no_backward": "SD15"}

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

# the ADM vector: pooled text (32) + six 256-wide size embeddings, as model_base.SDXL.encode_adm builds it
SDXL_UNET = {**SD15_UNET, "use_linear_in_transformer": True, "adm_in_channels": 32 + 6 * 256,
             "num_classes": "sequential", "transformer_depth": [0, 1], "transformer_depth_output": [0, 0, 1, 1]}

# SD3.5 Medium's options (q/k RMSNorm, x-block self-attention) on one joint block of width 64 (64 per block)
SD3_MMDIT = {
    "in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": 1, "input_size": None, "num_patches": 64,
    "pos_embed_max_size": 8, "pos_embed_scaling_factor": None, "adm_in_channels": 32, "qk_norm": "rms",
    "x_block_self_attn_layers": [0], "context_embedder_config": {
        "target": "torch.nn.Linear", "params": {"in_features": 32, "out_features": 64}},
    "dtype": torch.float32,
}

CHROMA_DIT = {
    "image_model": "chroma", "in_channels": 64, "out_channels": 64, "context_in_dim": 32, "hidden_size": 64,
    "mlp_ratio": 4.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1, "axes_dim": [8, 12, 12], "theta": 10000,
    "patch_size": 2, "qkv_bias": True, "in_dim": 64, "out_dim": 64, "hidden_dim": 64, "n_layers": 1,
    "dtype": torch.float32,
}

# Z-Image's NextDiT options (its modulation, time scale, RoPE θ and padding) on one layer; width 256, the
# smallest its modulation takes (the timestep embedding is 256 wide and adaLN reads min(dim, 256))
ZIMAGE_DIT = {**LUMINA2_DIT, "dim": 256, "n_heads": 8, "n_kv_heads": 8, "ffn_dim_multiplier": 8.0 / 3.0,
              "z_image_modulation": True, "time_scale": 1000.0, "rope_theta": 256.0, "pad_tokens_multiple": 32}

QWEN_IMAGE_DIT = {
    "image_model": "qwen_image", "patch_size": 2, "in_channels": 64, "out_channels": 16, "num_layers": 1,
    "attention_head_dim": 32, "num_attention_heads": 2, "joint_attention_dim": 32, "axes_dims_rope": (8, 12, 12),
    "dtype": torch.float32,
}

# ERNIE-Image's DiT on one layer of width 64 (two heads of 32 = the RoPE axes 8 + 12 + 12)
ERNIE_DIT = {
    "image_model": "ernie", "hidden_size": 64, "num_attention_heads": 2, "num_layers": 1, "ffn_hidden_size": 128,
    "in_channels": 128, "out_channels": 128, "patch_size": 1, "text_in_dim": 32, "rope_axes_dim": (8, 12, 12),
    "dtype": torch.float32,
}

#: Wan 2.1 VAE width (ComfyUI 0.33 reads it from the weights, decoder.head.0.gamma)
WAN_VAE_DIM = 8
#: the width ComfyUI 0.3.64 builds every Wan 2.1 VAE with (the real VAE's; see build_wan_vae)
WAN_VAE_FIXED_DIM = 96

WEIGHT_STD = 0.2


def flux_config() -> dict:
    """FLUX_DIT for this host: ComfyUI 0.33 made `FluxParams.txt_ids_dims` a required field
    (`[]` for FLUX.1, as comfy/model_detection.py sets it); 0.3.64 has no such field."""
    fields = {f.name for f in dataclasses.fields(comfy.ldm.flux.model.FluxParams)}
    return {**FLUX_DIT, "txt_ids_dims": []} if "txt_ids_dims" in fields else dict(FLUX_DIT)


def available_families() -> list[str]:
    """The FAMILIES this host can build (their supported_models class exists)."""
    return [f for f in FAMILIES if hasattr(comfy.supported_models, SUPPORTED_CLASS[f])]


def chroma_config() -> dict:
    """CHROMA_DIT for this host (0.33 made `ChromaParams.txt_ids_dims` and `vec_in_dim` required fields)."""
    fields = {f.name for f in dataclasses.fields(comfy.ldm.chroma.model.ChromaParams)}
    extra = {"txt_ids_dims": [], "vec_in_dim": None}
    return {**CHROMA_DIT, **{k: v for k, v in extra.items() if k in fields}}


def init_weights_(module: torch.nn.Module, generator: torch.Generator, std: float = WEIGHT_STD) -> None:
    """Norm scales 1, biases 0, other weights N(0, std²); floating-point buffers N(0, std²) too: ComfyUI
    allocates those a checkpoint fills (SD3's MMDiT `pos_embed`) with torch.empty, whose contents would
    differ from run to run (and may not be finite)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and ("norm" in name or name.endswith(".scale")) and not name.endswith("bias"):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=generator) * std)
        for b in module.buffers():
            if b.is_floating_point():
                b.copy_(torch.randn(b.shape, generator=generator) * std)


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


def build_wan_vae(generator: torch.Generator) -> comfy.sd.VAE:
    """A narrow Wan 2.1 VAE (16-channel 3-D latents [B, 16, T, h, w], /8 spatial) as comfy.sd.VAE.

    Where the host reads the width from the weights it is built from the state dict, like any
    loaded VAE. A host that builds every Wan 2.1 VAE 96 wide (0.3.64) gets only the key that
    picks the Wan 2.1 branch, and the VAE it made is then handed the narrow autoencoder and a
    patcher over it (the 96-wide one would make every decode in these tests ~30× slower)."""
    autoencoder = comfy.ldm.wan.vae.WanVAE(dim=WAN_VAE_DIM, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                                           attn_scales=[], temperal_downsample=[False, True, True])
    init_weights_(autoencoder, generator)
    with torch.no_grad():  # RMS_norm's gammas are norm scales
        for name, p in autoencoder.named_parameters():
            if name.endswith("gamma"):
                p.fill_(1.0)
    if 'sd["decoder.head.0.gamma"]' in inspect.getsource(comfy.sd.VAE.__init__):
        return comfy.sd.VAE(sd=autoencoder.state_dict())
    marker = {"decoder.middle.0.residual.0.gamma": torch.ones((4 * WAN_VAE_FIXED_DIM, 1, 1, 1))}
    vae = comfy.sd.VAE(sd=marker)
    vae.first_stage_model = autoencoder.eval().to(vae.vae_dtype)
    vae.patcher = comfy.model_patcher.ModelPatcher(autoencoder, load_device=vae.device,
                                                   offload_device=vae.patcher.offload_device)
    return vae


def _patcher(model) -> comfy.model_patcher.ModelPatcher:
    return comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=comfy.model_management.unet_offload_device())


def _text_pooled(generator: torch.Generator, tokens: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn((1, tokens, 32), generator=generator), torch.randn((1, 32), generator=generator)


def build(family: str, seed: int):
    """(MODEL, VAE, positive, negative) for one of FAMILIES (see the module docstring)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}; got {family!r}")
    if family not in available_families():
        raise ValueError(f"this ComfyUI has no comfy.supported_models.{SUPPORTED_CLASS[family]} (family {family!r})")
    generator = torch.Generator().manual_seed(int(seed))
    if family in _BUILDERS:
        model, positive, negative = _BUILDERS[family](generator)
        init_weights_(model.diffusion_model, generator)
        vae = build_wan_vae(generator) if family == "qwen_image" else build_vae(model.latent_format.latent_channels,
                                                                                  generator)
        return _patcher(model), vae, positive, negative
    if family in ("sd15", "sd15v", "no_backward"):
        config = comfy.supported_models.SD15(dict(SD15_UNET))
        if family == "sd15v":
            model = comfy.model_base.BaseModel(config, model_type=comfy.model_base.ModelType.V_PREDICTION)
        else:
            model = config.get_model({})
        init_weights_(model.diffusion_model, generator)
        if family == "no_backward":
            model.diffusion_model = no_backward.NoBackwardUNet(model.diffusion_model)
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
    return _patcher(model), build_vae(channels, generator), positive, negative


def _sdxl(generator):
    model = comfy.supported_models.SDXL(dict(SDXL_UNET)).get_model({})
    text, pooled = _text_pooled(generator, 7)
    size = {"width": 64, "height": 64}
    return model, [[text, {"pooled_output": pooled, **size}]], [[text * 0.25, {"pooled_output": pooled * 0.25,
                                                                                **size}]]


def _sd3(generator):
    model = comfy.supported_models.SD3(dict(SD3_MMDIT)).get_model({})
    text, pooled = _text_pooled(generator)
    return model, [[text, {"pooled_output": pooled}]], [[text * 0.25, {"pooled_output": pooled * 0.25}]]


def _flux_schnell(generator):
    model = comfy.supported_models.FluxSchnell({**flux_config(), "guidance_embed": False}).get_model({})
    text, pooled = _text_pooled(generator)
    return model, [[text, {"pooled_output": pooled}]], [[torch.zeros_like(text),
                                                         {"pooled_output": torch.zeros_like(pooled)}]]


def _chroma(generator):
    model = comfy.supported_models.Chroma(chroma_config()).get_model({})
    text, pooled = _text_pooled(generator)  # 0.3.64's FLUX conditioning reads a pooled vector, which Chroma ignores
    return model, [[text, {"pooled_output": pooled, "guidance": 0.0}]], [[text * 0.25, {"pooled_output": pooled,
                                                                                          "guidance": 0.0}]]


def _zimage(generator):
    model = comfy.supported_models.ZImage(dict(ZIMAGE_DIT)).get_model({})
    text, _ = _text_pooled(generator)
    mask = torch.ones((1, 5), dtype=torch.long)
    return model, [[text, {"attention_mask": mask}]], [[text * 0.25, {"attention_mask": mask}]]


def _qwen_image(generator):
    model = comfy.supported_models.QwenImage(dict(QWEN_IMAGE_DIT)).get_model({})
    text, _ = _text_pooled(generator)
    return model, [[text, {}]], [[text * 0.25, {}]]


def _ernie(generator):
    model = comfy.supported_models.ErnieImage(dict(ERNIE_DIT)).get_model({})
    text, _ = _text_pooled(generator)
    return model, [[text, {}]], [[text * 0.25, {}]]


#: families built here (model, positive, negative); the older ones are built in `build` itself
_BUILDERS = {"sdxl": _sdxl, "sd3": _sd3, "flux_schnell": _flux_schnell, "chroma": _chroma, "zimage": _zimage,
             "qwen_image": _qwen_image, "ernie": _ernie}
