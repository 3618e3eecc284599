"""Gradient checkpointing of a model's repeated blocks during reward-gradient passes.

Every guided SMC step and MCMC iteration of the Ψ-Sampler (Yoon et al., arXiv
2506.01320) differentiates r̂(x) = reward(decode(D(x, σ))) with respect to x; autograd
keeps every activation of the denoiser D and the VAE decoder until backward.
Gradient checkpointing (Chen et al. 2016, "Training deep nets with sublinear memory
cost", arXiv 1604.06174) keeps only each block's inputs and recomputes the block's
activations during backward: activation memory falls from the sum over blocks to
about one block plus the block inputs, for one extra forward pass of the blocks.

Block discovery is generic, as in ComfyUI's own trainer (comfy_extras/nodes_train.py
treats ModuleList/Sequential/ModuleDict as transparent containers): starting from a
root module (the diffusion model, the VAE's decoder), containers are those classes and
plain `nn.Module`s used as attribute namespaces (their class keeps `nn.Module.forward`,
so nobody calls them, e.g. the VAE decoder's `up[i]`). A *block* is the first
non-container module with sub-modules reached from a ModuleList or Sequential through
containers only: the UNet's ResBlocks, SpatialTransformers and Up/Downsamples in
input_blocks, middle_block and output_blocks; a DiT's double_blocks/single_blocks or
`layers`; the VAE decoder's ResnetBlocks, AttnBlocks and Upsamples. Single layers
(Linear, Conv) are never blocks: checkpointing them saves nothing.

The wrapping is an instance attribute `forward` set only for the duration of a
`checkpointed(...)` context and removed on exit (also on exception), so forward-only
passes run the model untouched.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
from torch.utils import _pytree as pytree

CONTAINERS = (torch.nn.ModuleList, torch.nn.Sequential, torch.nn.ModuleDict)
LISTS = (torch.nn.ModuleList, torch.nn.Sequential)

#: memory modes: which parts of a gradient pass are checkpointed
MODES = {"fast": (), "balanced": ("decoder",), "low": ("decoder", "denoiser")}
DEFAULT_MODE = "low"


class BlocksNotFound(ValueError):
    """A memory mode needs blocks to checkpoint and the module has none that can be found."""


def _is_container(module: torch.nn.Module) -> bool:
    return isinstance(module, CONTAINERS) or type(module).forward is torch.nn.Module.forward


def find_blocks(root: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks under `root` (see the module docstring), in registration order."""
    blocks: list[torch.nn.Module] = []
    seen: set[int] = set()

    def visit(module: torch.nn.Module, in_list: bool) -> None:
        for child in module.children():
            if id(child) in seen:
                continue
            seen.add(id(child))
            if _is_container(child):
                visit(child, in_list or isinstance(child, LISTS))
            elif in_list and any(True for _ in child.children()):
                blocks.append(child)
            else:
                visit(child, False)

    visit(root, isinstance(root, LISTS))  # a Sequential root is itself the list
    return blocks


class _Checkpoint(torch.autograd.Function):
    """One block as one autograd node: forward without a graph, keeping only the input
    tensors; backward recomputes the block with a graph and differentiates it.

    Own Function rather than torch.utils.checkpoint: the reentrant variant cannot be
    differentiated with torch.autograd.grad, and the non-reentrant one stores the
    recomputed activations without a version check, so a block that updates saved
    activations in place (FLUX's `img += gate * out`) would give silently wrong
    gradients; here the recomputation can run under the caller's saved-tensor hooks."""

    @staticmethod
    def forward(ctx, call: "_BlockCall", *tensors: torch.Tensor):
        ctx.call = call
        ctx.inputs = tensors  # kept by reference with their versions: checked in backward
        ctx.versions = [t._version for t in tensors]
        with torch.no_grad():
            return tuple(call.run(tensors))

    @staticmethod
    def backward(ctx, *grad_outputs):
        call, inputs = ctx.call, ctx.inputs
        if any(t._version != v for t, v in zip(inputs, ctx.versions)):
            raise RuntimeError("a checkpointed block's input was modified by an inplace operation before "
                               "backward; its gradient would be wrong")
        detached = [t.detach().requires_grad_(t.requires_grad) for t in inputs]
        with torch.enable_grad(), call.recompute_context():
            outputs = call.run(detached)
        pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if o.requires_grad]
        wanted = [t for t in detached if t.requires_grad]
        grads = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True)
                     if pairs and wanted else ())
        ctx.call = ctx.inputs = None
        return (None, *(next(grads) if t.requires_grad else None for t in detached))


class _BlockCall:
    """One call of a block: its arguments with the tensors taken out (so every tensor,
    also in kwargs and tuples, is an input of the autograd node), dicts copied once (the
    recomputation sees the options the block saw, not later edits by the caller)."""

    def __init__(self, forward: Callable, args: tuple, kwargs: dict, recompute_context: Callable):
        args = tuple(dict(a) if isinstance(a, dict) else a for a in args)
        kwargs = {k: dict(v) if isinstance(v, dict) else v for k, v in kwargs.items()}
        leaves, self.spec = pytree.tree_flatten((args, kwargs),
                                                is_leaf=lambda v: isinstance(v, dict) and v is not kwargs)
        self.slots = [i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor)]
        self.leaves = [None if i in set(self.slots) else leaf for i, leaf in enumerate(leaves)]
        self.tensors = tuple(leaves[i] for i in self.slots)
        self.forward = forward
        self.recompute_context = recompute_context
        self.out_spec, self.out_slots, self.out_constants = None, [], []

    def run(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Flat output tensors of the block on `tensors`; inputs are cloned first, so a block
        that adds into its input in place cannot change the tensors kept for backward."""
        leaves = list(self.leaves)
        for slot, tensor in zip(self.slots, tensors):
            leaves[slot] = tensor.clone() if tensor.is_floating_point() else tensor
        args, kwargs = pytree.tree_unflatten(leaves, self.spec)
        out_leaves, self.out_spec = pytree.tree_flatten(self.forward(*args, **kwargs))
        # non-tensor outputs (SD3's last joint block returns (None, x)) are passed through as constants
        self.out_slots = [i for i, leaf in enumerate(out_leaves) if isinstance(leaf, torch.Tensor)]
        self.out_constants = [None if isinstance(leaf, torch.Tensor) else leaf for leaf in out_leaves]
        return [out_leaves[i] for i in self.out_slots]

    def outputs(self, tensors: Sequence[torch.Tensor]):
        """The block's output structure with `tensors` in the places of its tensor outputs."""
        leaves = list(self.out_constants)
        for slot, tensor in zip(self.out_slots, tensors):
            leaves[slot] = tensor
        return pytree.tree_unflatten(leaves, self.out_spec)


def _checkpointing_forward(original: Callable, recompute_context: Callable) -> Callable:
    def forward(*args, **kwargs):
        call = _BlockCall(original, args, kwargs, recompute_context)
        if not torch.is_grad_enabled() or not any(t.requires_grad for t in call.tensors):
            return original(*args, **kwargs)
        return call.outputs(_Checkpoint.apply(call, *call.tensors))

    forward.psi_checkpointing = True
    return forward


@contextlib.contextmanager
def checkpointed(blocks: Sequence[torch.nn.Module],
                 recompute_context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 ) -> Iterator[int]:
    """Wrap each block's forward with checkpointing for the duration of the context
    (yields how many were wrapped); restored on exit, also on exception.
    recompute_context: entered around each recomputation in backward (e.g. the
    bridge's saved-activation cloning for models with in-place residuals)."""
    wrapped: list[tuple[torch.nn.Module, object]] = []
    missing = object()
    try:
        for block in blocks:
            if getattr(block.forward, "psi_checkpointing", False):
                continue
            own = block.__dict__.get("forward", missing)
            block.forward = _checkpointing_forward(block.forward, recompute_context)
            wrapped.append((block, own))
        yield len(wrapped)
    finally:
        for block, own in reversed(wrapped):
            if own is missing:
                del block.forward
            else:
                block.forward = own


def check_mode(mode: str) -> tuple[str, ...]:
    """The parts `mode` checkpoints, or a ValueError naming the value and the modes."""
    if mode not in MODES:
        raise ValueError(f"memory must be one of {', '.join(MODES)}; got {mode!r}")
    return MODES[mode]


def blocks_for(mode: str, parts: dict[str, torch.nn.Module | None]) -> list[torch.nn.Module]:
    """The blocks `mode` checkpoints among `parts` ({"denoiser": diffusion model,
    "decoder": VAE decoder}); BlocksNotFound names the part, its class and what works."""
    blocks: list[torch.nn.Module] = []
    for part in check_mode(mode):
        root = parts.get(part)
        found = find_blocks(root) if root is not None else []
        if not found:
            name = type(root).__name__ if root is not None else "none"
            works = "memory: fast" if part == "decoder" else "memory: fast or balanced (checkpoints the VAE decoder only)"
            raise BlocksNotFound(
                f"memory: {mode} checkpoints the {part}'s repeated blocks, but none were found in this {part} "
                f"({name}: no ModuleList/Sequential of blocks); use {works}")
        blocks += found
    return blocks
