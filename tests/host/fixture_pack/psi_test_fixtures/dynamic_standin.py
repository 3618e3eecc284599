"""A stand-in for ComfyUI's dynamic-VRAM patcher, for CPU hosts (test-only).

ComfyUI 0.33 streams weights with comfy-aimdo through `ModelPatcherDynamic`, but
its `__new__` returns a classic `ModelPatcher` for a CPU load device, so no real
dynamic patcher can exist on a CPU host. The stand-in keeps ComfyUI's classic
patcher (ComfyUI must not take its dynamic code paths for it) and gives the
bridge what it asks of a dynamic patcher:

* `get_non_dynamic_delegate()`: a classic patcher over a second copy of the model,
  rebuilt from the same seed (as ComfyUI reloads through `cached_patcher_init`), a
  method of the stand-in class so that clones keep it;
* `is_dynamic`: the host package's own predicate (`comfy_host.dynamic_vram.is_dynamic`)
  is replaced for the duration of a check (`claim_dynamic`), because the patcher's `is_dynamic()` must stay False
  for ComfyUI.

Forward pre-hooks count the forward passes run with gradients on the stand-in's
model and on its delegate, so a test can see which one a gradient pass used.
"""

from __future__ import annotations

import contextlib
from collections import Counter

import torch

import comfy.model_patcher

MARK = "psi_standin"


class StandInDynamicPatcher(comfy.model_patcher.ModelPatcher):
    """A classic patcher with `get_non_dynamic_delegate()`. Its clones keep the class
    (ModelPatcher.clone builds `self.__class__`), as clones of a dynamic patcher stay
    dynamic; what the delegate needs lives on the shared model object."""

    def get_non_dynamic_delegate(self):
        rebuild, counts, kind = getattr(self.model, MARK)
        counts[f"{kind}_delegates_made"] += 1
        fresh = rebuild()
        _count_grad_forwards(_hooked_module(fresh.model, kind), counts, f"{kind}_delegate")
        return fresh


def _count_grad_forwards(module: torch.nn.Module, counts: Counter, key: str) -> None:
    def hook(_module, _args):
        if torch.is_grad_enabled():
            counts[key] += 1
    module.register_forward_pre_hook(hook)


def _hooked_module(model: torch.nn.Module, kind: str) -> torch.nn.Module:
    return model.diffusion_model if kind == "model" else model.decoder


def make_standin(patcher, rebuild, counts: Counter, kind: str):
    """Turn `patcher` into a stand-in whose delegate comes from `rebuild()` (a fresh
    patcher with the same weights); `kind` ("model" or "vae") names the counters."""
    _count_grad_forwards(_hooked_module(patcher.model, kind), counts, f"{kind}_standin")
    setattr(patcher.model, MARK, (rebuild, counts, kind))
    patcher.__class__ = StandInDynamicPatcher
    return patcher


def counts_of(patcher) -> dict:
    return dict(getattr(patcher.model, MARK, (None, {}, None))[1])


def is_standin(patcher) -> bool:
    return isinstance(patcher, StandInDynamicPatcher)


@contextlib.contextmanager
def claim_dynamic(dynamic_vram):
    """The host package (its `dynamic_vram` module) treats stand-ins as dynamic while the
    block runs (restored after)."""
    original = dynamic_vram.is_dynamic
    dynamic_vram.is_dynamic = lambda patcher: is_standin(patcher) or original(patcher)
    try:
        yield
    finally:
        dynamic_vram.is_dynamic = original
