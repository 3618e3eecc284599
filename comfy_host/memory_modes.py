"""The sampler nodes' `memory` option: what a reward-gradient pass checkpoints.

A gradient pass of the Ψ-Sampler (Yoon et al., arXiv 2506.01320) runs, per
micro-batch x [B, C, h, w], the denoiser (CFG: batch 2B), the VAE decoder (batch B,
images [B, 3, 8h, 8w]) and the reward, and differentiates the reward w.r.t. x.

  fast      keep every activation (no recomputation)
  balanced  checkpoint the VAE decoder's blocks (Chen et al. 2016): at 512² its
            full-resolution activations are the largest single part of the pass
  low       checkpoint the decoder's and the denoiser's blocks

The default is low. Measured at SD1.5 geometry (512², CFG, grad batch 1, float32, CPU), a
look-ahead's activation memory is 0.24× fast's for 1.40–1.51× its compute time (balanced:
0.77× for 1.20×, the least memory saved per second spent); and only low fits the cases that run
out of memory (FLUX at 512² on a 24 GB card; with fp8 weights fast mode also keeps every
layer's bf16 cast of its weight for backward). Forward-only passes are never changed.

The TAESD look-ahead decoder is not checkpointed in any mode: its frozen-weight layers
(`input_gradients`) keep only boolean ReLU masks, less than the block inputs that
checkpointing keeps (at 512² on a CPU, an activation peak of 0.34 GiB; checkpointed per
block, 0.62 GiB). A mode whose part has no blocks that can be found is refused before
sampling (`check`), and an out-of-memory error inside a gradient pass is re-raised as
`GradientOutOfMemory` naming the options that lower it.
"""

from __future__ import annotations

import torch

from .checkpointing import DEFAULT_MODE, MODES, BlocksNotFound, blocks_for, check_mode, checkpointed

__all__ = ["DEFAULT_MODE", "MODES", "BlocksNotFound", "GradientOutOfMemory", "check", "check_mode",
           "checkpointed", "out_of_memory", "parts_of", "TOOLTIP"]

TOOLTIP = ("Memory of the reward-gradient passes. fast: keep all activations. balanced: recompute the VAE "
           "decoder's blocks in backward (gradient checkpointing; most of the memory at 512² and above, little "
           "extra time). low: also the denoiser's blocks (least memory, about one more denoiser forward per "
           "gradient). Results are the same in every mode; forward-only passes are unchanged.")


def parts_of(diffusion_model: torch.nn.Module | None, vae_model: torch.nn.Module | None) -> dict:
    """{"denoiser": the diffusion model, "decoder": the VAE's decoder (or the VAE model
    itself when it has no `decoder`)}."""
    decoder = getattr(vae_model, "decoder", vae_model) if vae_model is not None else None
    return {"denoiser": diffusion_model, "decoder": decoder}


def check(mode: str, diffusion_model: torch.nn.Module | None, vae_model: torch.nn.Module | None) -> list:
    """The blocks `mode` checkpoints for this model and VAE (BlocksNotFound / ValueError
    naming the option, the class and the modes that work, before any sampling)."""
    return blocks_for(mode, parts_of(diffusion_model, vae_model))


class GradientOutOfMemory(torch.OutOfMemoryError):
    """Out of memory in a reward-gradient pass, with the options that lower it (a
    torch.OutOfMemoryError, so ComfyUI's executor frees its models as for any OOM)."""


def out_of_memory(err: BaseException, mode: str, grad_batch_size: int, model_name: str) -> GradientOutOfMemory:
    lower = [f"memory: {m}" for m in list(MODES)[list(MODES).index(mode) + 1:]] if mode in MODES else []
    if grad_batch_size > 1:
        lower.append(f"grad_batch_size below {grad_batch_size}")
    advice = " or ".join(lower) if lower else "a smaller latent, or a GPU with more memory"
    return GradientOutOfMemory(
        f"out of memory in a reward-gradient pass ({model_name}, memory: {mode}, grad_batch_size "
        f"{grad_batch_size}): set {advice}. ({str(err).splitlines()[0] if str(err) else type(err).__name__})")
