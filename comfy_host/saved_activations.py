"""Backward through models that update activations autograd has saved.

Models that add residuals in place into saved activations (FLUX's `x += ...`) make
backward fail. Under `clone_saved_activations` autograd saves clones of activations
(tensors that require grad) at save time: correct gradients for about twice the saved
activation memory. Tensors outside the graph are kept by reference with a version
check, so an in-place change there still fails loudly. Which model classes need it is
known for ComfyUI's own in-place blocks (INPLACE_BLOCKS) and learned for any other at
run time (INPLACE_MODEL_CLASSES: later runs clone from their first gradient pass).
"""

from __future__ import annotations

import torch

#: diffusion-model classes seen updating saved activations in place (learned at run
#: time, so later runs clone from their first gradient pass instead of repeating it)
INPLACE_MODEL_CLASSES: set[type] = set()

#: ComfyUI blocks that add residuals in place into activations autograd has saved
#: (`x += gate * out`, `addcmul_`; ComfyUI 0.3.64). Models built from them (FLUX, Chroma,
#: HunyuanVideo, ...) clone saved activations from their first gradient pass; any
#: other model that does the same is caught by the sampler bridge's retry.
INPLACE_BLOCKS = frozenset({
    "comfy.ldm.flux.layers.DoubleStreamBlock", "comfy.ldm.flux.layers.SingleStreamBlock",
    "comfy.ldm.chroma.layers.DoubleStreamBlock", "comfy.ldm.chroma.layers.SingleStreamBlock",
})


def _pack_saved(tensor: torch.Tensor):
    """Saved-tensor hook: copy activations (they may be updated in place later);
    keep other tensors by reference with their version for a check at unpack."""
    if tensor.requires_grad:
        return tensor.clone()
    if tensor.is_inference():
        return (tensor, None)
    return (tensor, tensor._version)


def _unpack_saved(packed):
    if isinstance(packed, torch.Tensor):
        return packed
    tensor, version = packed
    if version is not None and tensor._version != version:
        raise RuntimeError("a tensor saved for the reward gradient was modified by an inplace operation "
                           "outside the differentiated path; the gradient would be wrong")
    return tensor


def clone_saved_activations():
    """Context manager for a forward pass whose backward must survive in-place
    updates of activations: autograd saves clones of them."""
    return torch.autograd.graph.saved_tensors_hooks(_pack_saved, _unpack_saved)


def builds_on_inplace_blocks(module: torch.nn.Module) -> bool:
    """Whether `module` contains one of the INPLACE_BLOCKS."""
    return any(f"{type(m).__module__}.{type(m).__qualname__}" in INPLACE_BLOCKS for m in module.modules())


def is_inplace_error(err: RuntimeError) -> bool:
    """Whether autograd refused a backward because a saved tensor was updated in place."""
    return "modified by an inplace operation" in str(err)
