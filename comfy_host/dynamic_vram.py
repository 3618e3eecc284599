"""The model a gradient pass runs through where ComfyUI streams weights with dynamic VRAM."""

from __future__ import annotations

from .checks import HostInputError
from .compat import missing_symbol


def is_dynamic(patcher) -> bool:
    """Whether ComfyUI streams this patcher's weights with dynamic VRAM (comfy-aimdo,
    `ModelPatcherDynamic`, 0.33 on NVIDIA by default); False on hosts without it."""
    probe = getattr(patcher, "is_dynamic", None)
    return bool(probe()) if callable(probe) else False


def gradient_patcher(patcher):
    """The patcher whose model a gradient pass runs through: `patcher` itself, or for a
    dynamic-VRAM patcher its non-dynamic delegate (`get_non_dynamic_delegate()`).

    Why not differentiate through a dynamic patcher: its weights stay in (pinned,
    possibly mmapped) host memory and are cast at op time into comfy-aimdo's virtual
    VRAM or a cast buffer that the next layers reuse (comfy/ops.py
    `cast_modules_with_vbar`, `resolve_cast_module_with_vbar`). Autograd would save
    those per-op weights for backward, where they may have been evicted or overwritten
    (no version counter sees it: silently wrong gradients), and weights cached resident
    from an earlier pass under the executor's inference mode are inference tensors that
    cannot be saved. Converting its parameters (make_gradient_ready) would also copy the
    whole model into RAM and drop the `_model_dtype` tags aimdo set on them. The
    delegate is a classic patcher over a second copy of the weights that ComfyUI reloads
    through the loader's `cached_patcher_init` (kept on the dynamic patcher for reuse,
    with the same patches and model options), loaded like any model before 0.33; the
    dynamic model keeps serving the sampler's forward-only passes unchanged. A delegate
    that is only partly loaded streams its weights through ComfyUI's per-stream cast
    buffers (`get_cast_buffer`); those are views of one tensor, so a saved weight that is
    overwritten before backward bumps its version and fails loudly in `_unpack_saved` or
    autograd's own check, never silently (not yet run on a GPU)."""
    if not is_dynamic(patcher):
        return patcher
    delegate = getattr(patcher, "get_non_dynamic_delegate", None)
    if delegate is None:
        raise missing_symbol("comfy.model_patcher.ModelPatcherDynamic.get_non_dynamic_delegate")
    try:
        return delegate()
    except RuntimeError as err:
        raise HostInputError(
            f"{type(patcher.model).__name__} is managed by ComfyUI's dynamic VRAM, and its loader left no way to "
            "reload it as a classic model (no cached_patcher_init), which reward gradients need. Load it with a "
            "core loader (Load Checkpoint, Load Diffusion Model, Load VAE) or start ComfyUI with "
            "--disable-dynamic-vram") from err
