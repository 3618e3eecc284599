"""T2ICount's Stable Diffusion 1.5 parts on ComfyUI's classes (Qian et al., T2ICount,
CVPR 2025: a counting head on the features of a fine-tuned SD1.5 UNet).

* UNet: T2ICount fine-tunes the SD1.5 UNet, so its weights come from the T2ICount
  checkpoint (`unet.unet.diffusion_model.*`, LDM key names, which ComfyUI's own
  `UNetModel` uses). The configuration is read from the weights with ComfyUI's
  `detect_unet_config` plus SD1.5's 8 attention heads. It runs at t = 0 through
  `UNetModel.forward`, and the outputs of output blocks 1, 4, 7 and 11 (the authors'
  feature taps), caught by forward hooks on each block's last layer, are returned
  instead of the noise prediction.
* VAE encoder: the user's SD1.5 VAE (frozen in T2ICount). `first_stage_model.encode`
  gives the posterior mean (ComfyUI's regulariser takes the mode), differentiably;
  `VAE.encode` is not used (it runs without gradients). No latent scaling: T2ICount
  reads the raw posterior mean.
* Text: the user's SD1.5 CLIP, last layer (a Set CLIP Last Layer on the input is
  ignored), one phrase per object; the mask covers the phrase's own tokens.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..rewards.quantity import T2ICOUNT_SOURCE
from ..rewards.t2icount import TAPPED_OUTPUT_BLOCKS, CountHead, T2ICountReward, phrase_token_mask, \
    read_t2icount_checkpoint
from ..rewards.targets import CountTarget
from .checks import HostInputError
from .compat import host_symbol
from .gradients import make_gradient_ready
from .memory import ensure_loaded

LOG = logging.getLogger("psi_sampler")

#: SD1.5's attention layout (not recorded in the weights)
SD15_ATTENTION = {"num_heads": 8, "num_head_channels": -1}
#: what the feature taps assume: four levels of two residual blocks each, 4-channel latents
SD15_LEVELS = 4
SD15_RES_BLOCKS = 2
SD15_LATENT_CHANNELS = 4


class T2ICountUNet(torch.nn.Module):
    """The fine-tuned SD1.5 UNet (ComfyUI's UNetModel) returning T2ICount's features:
    (latents [N, 4, h, w], context [N, T, D]) -> [f0, f1, f2, f3], finest first."""

    def __init__(self, unet, context_dim: int):
        super().__init__()
        self.unet = unet
        self.context_dim = int(context_dim)

    @property
    def widths(self) -> tuple[int, ...]:
        """Channel widths of the four tapped outputs, finest first."""
        mc, mult = self.unet.model_channels, self.unet.channel_mult
        return tuple(mc * m for m in mult)

    def forward(self, latents: torch.Tensor, context: torch.Tensor) -> list[torch.Tensor]:
        unet = self.unet
        param = next(unet.parameters())
        x = latents.to(param.device, param.dtype)
        context = context.to(param.device, param.dtype)
        steps = torch.zeros(x.shape[0], device=x.device)
        tapped = (*TAPPED_OUTPUT_BLOCKS, len(unet.output_blocks) - 1)
        taps: dict[int, torch.Tensor] = {}
        hooks = [unet.output_blocks[i][-1].register_forward_hook(
            lambda _module, _args, out, i=i: taps.__setitem__(i, out)) for i in tapped]
        try:
            unet(x, timesteps=steps, context=context, transformer_options={})
        finally:
            for hook in hooks:
                hook.remove()
        return [taps[i] for i in reversed(tapped)]


def build_unet(state: dict[str, torch.Tensor], path: Path) -> T2ICountUNet:
    """ComfyUI's UNetModel with the checkpoint's UNet weights (strict), frozen, float32, CPU."""
    config = host_symbol("comfy.model_detection.detect_unet_config")(state, "")
    problem = None
    if config is None or not config.get("use_spatial_transformer"):
        problem = "its UNet weights are not an SD1.5-style UNet"
    elif (len(config["channel_mult"]) != SD15_LEVELS or set(config["num_res_blocks"]) != {SD15_RES_BLOCKS}
          or config["in_channels"] != SD15_LATENT_CHANNELS):
        problem = (f"its UNet has {len(config['channel_mult'])} levels of {config['num_res_blocks']} residual "
                   f"blocks on {config['in_channels']}-channel latents; T2ICount's feature taps need SD1.5's "
                   f"{SD15_LEVELS} levels of {SD15_RES_BLOCKS} on {SD15_LATENT_CHANNELS}")
    if problem:
        raise HostInputError(T2ICOUNT_SOURCE.message(problem, path))
    config = {**config, **SD15_ATTENTION, "dtype": torch.float32}
    unet = host_symbol("comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel")(
        **config, device="cpu", operations=host_symbol("comfy.ops.disable_weight_init"))
    missing, unexpected = unet.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise HostInputError(T2ICOUNT_SOURCE.message(
            f"its UNet weights do not fit ComfyUI's SD1.5 UNet: missing {sorted(missing)[:5]}, unexpected "
            f"{sorted(unexpected)[:5]}", path))
    unet.eval().requires_grad_(False)
    return T2ICountUNet(unet, config["context_dim"])


def load_t2icount_model(path: Path) -> tuple[T2ICountUNet, CountHead]:
    """(UNet with features, counting head) from best_model_paper.pth; call outside inference
    mode (the weights take part in gradient passes)."""
    checkpoint = read_t2icount_checkpoint(path)
    unet = build_unet(checkpoint.unet_state, path)
    if unet.widths != checkpoint.head.widths or unet.context_dim != checkpoint.head.text_dim:
        raise HostInputError(T2ICOUNT_SOURCE.message(
            f"its counting head reads widths {checkpoint.head.widths} and {checkpoint.head.text_dim}-wide text but "
            f"its UNet gives {unet.widths} and {unet.context_dim}", path))
    LOG.info("psi: T2ICount UNet %s, head %s (skipped %d frozen VAE/CLIP tensors; the host's are used)",
             unet.widths, checkpoint.head.widths, checkpoint.skipped)
    return unet, checkpoint.head


# --------------------------------------------------------------------------- host VAE and CLIP


def check_vae(vae) -> None:
    """An SD1.5-style image VAE (4-channel latents), or a clear error (cheap)."""
    model = getattr(vae, "first_stage_model", None)
    if model is None or not hasattr(model, "encoder"):
        raise HostInputError("backend t2icount needs a VAE with an encoder: connect the VAE output of an SD1.5 "
                             "checkpoint loader (Load Checkpoint) or Load VAE with the SD1.5 VAE")
    if getattr(vae, "latent_dim", 2) != 2 or getattr(vae, "latent_channels", None) != SD15_LATENT_CHANNELS:
        raise HostInputError(
            f"backend t2icount needs the SD1.5 VAE (4-channel image latents); the connected VAE makes "
            f"{getattr(vae, 'latent_channels', '?')}-channel latents (use the VAE of an SD1.5 checkpoint)")


class VaeMeanEncoder:
    """images [B, 3, H, W] in [-1, 1] -> the VAE posterior mean [B, 4, H/8, W/8] (float32),
    differentiable; loads the VAE with ComfyUI's model management where it is not loaded
    and makes its weights usable by autograd before a gradient pass."""

    def __init__(self, vae):
        self.vae = vae

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        vae = self.vae
        with torch.inference_mode(False):
            ensure_loaded(vae.patcher)  # on every look-ahead micro-batch: must not unload the diffusion model
            if torch.is_grad_enabled() and images.requires_grad:
                for part in (vae.first_stage_model.encoder, getattr(vae.first_stage_model, "quant_conv", None)):
                    if part is not None:
                        make_gradient_ready(part)
        param = next(vae.first_stage_model.encoder.parameters())
        latents = vae.first_stage_model.encode(images.to(param.device, vae.vae_dtype))
        return latents.float().to(images.device)


def encode_phrases(clip, phrases: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden states [K, T, D], phrase token masks [K, T]) of each phrase with the CLIP's
    last layer (float32, CPU, normal tensors)."""
    if clip is None or getattr(clip, "tokenizer", None) is None:
        raise HostInputError("backend t2icount needs the SD1.5 CLIP text encoder: connect the CLIP output of an "
                             "SD1.5 checkpoint loader (Load Checkpoint)")
    clip = clip.clone()
    clip.clip_layer(None)  # T2ICount reads the last layer
    contexts, masks = [], []
    for phrase in phrases:
        tokens = clip.tokenize(phrase)
        if set(tokens) != {"l"}:
            raise HostInputError(f"backend t2icount needs the SD1.5 CLIP (CLIP-L only); the connected CLIP has "
                                 f"text encoders {sorted(tokens)}")
        chunks = tokens["l"]
        if len(chunks) != 1:
            raise HostInputError(f"the object phrase {phrase!r} is too long for one CLIP window (75 tokens)")
        tokenizer = getattr(clip.tokenizer, clip.tokenizer.clip)
        ids = [int(token) for token, *_ in chunks[0]]
        masks.append(phrase_token_mask(ids, tokenizer.end_token))
        cond = clip.encode_from_tokens(tokens)
        with torch.inference_mode(False):
            contexts.append(cond[0].detach().to("cpu", torch.float32).clone())
    return torch.stack(contexts), torch.stack(masks)


def t2icount_reward(unet: T2ICountUNet, head: CountHead, vae, clip, objects: list[str], counts: list[int],
                    beta: float = 1.0) -> T2ICountReward:
    """The T2ICount quantity reward with the host's SD1.5 VAE and CLIP (checks them first).
    Its tensors (targets, text states) are made outside inference mode: they take part in
    gradient passes."""
    check_vae(vae)
    with torch.inference_mode(False):
        target = CountTarget.build(objects, counts)
    contexts, masks = encode_phrases(clip, target.objects)
    if contexts.shape[-1] != head.text_dim:
        raise HostInputError(f"the connected CLIP gives {contexts.shape[-1]}-wide text features but T2ICount reads "
                             f"{head.text_dim} (SD1.5's CLIP ViT-L/14): connect the CLIP of an SD1.5 checkpoint")
    with torch.inference_mode(False):
        return T2ICountReward(head, VaeMeanEncoder(vae), unet, contexts, masks, target, beta, modules=[unet])
