"""ComfyUI 0.33's image models as releases between 0.3.64 and 0.33 run them: comfy-kitchen ops called
whatever the training switch says (test-only).

ComfyUI 0.33 routes its RoPE and fused norm + RoPE around comfy-kitchen's kernels while
`comfy.model_management.in_training` is set (flux/math.py `apply_rope`/`apply_rope1`, used by FLUX,
Chroma, Qwen-Image, Lumina 2 and Z-Image; lumina/model.py's fused q/k RMSNorm + RoPE; ernie/model.py's
fused RMSNorm + split-half RoPE). Earlier releases bind `apply_rope = comfy.quant_ops.ck.apply_rope` at
import time, with no such branch. `remove_training_fallbacks` gives those three modules a view of
ComfyUI in which `model_management.in_training` always reads False, so every branch takes the kernel,
as the ungated releases do; everything else of ComfyUI (the switch itself included) is untouched.
The view also counts each kernel called with an input that requires grad (`CALLS`): the proof that
the gradient passes went through the kernels and not around them.

Activated at the fixture pack's import when PSI_TEST_UNGATED_KITCHEN=1 (its own test server).
"""

from __future__ import annotations

import importlib
from collections import Counter

import torch

ENV = "PSI_TEST_UNGATED_KITCHEN"
#: the modules whose training-switch fallbacks are removed (those the host has)
GATED_MODULES = ("comfy.ldm.flux.math", "comfy.ldm.lumina.model", "comfy.ldm.ernie.model")
#: kitchen op name → calls with an input requiring grad, since the fallbacks were removed
CALLS: Counter = Counter()
PATCHED: list[str] = []


class _View:
    """Attribute access forwarded to `target`, except the names in `overrides`."""

    def __init__(self, target, **overrides):
        self._target, self._overrides = target, overrides

    def __getattr__(self, name):
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._target, name)


def _counted(name: str, function):
    def call(*args, **kwargs):
        if any(isinstance(a, torch.Tensor) and a.requires_grad for a in (*args, *kwargs.values())):
            CALLS[name] += 1
        return function(*args, **kwargs)
    return call


class _CountingKitchen(_View):
    def __getattr__(self, name):
        value = getattr(self._target, name)
        return _counted(name, value) if callable(value) and not isinstance(value, type) else value


def kitchen_version() -> str | None:
    """The comfy-kitchen version ComfyUI imported (None where it has none)."""
    import sys
    from importlib import metadata

    if "comfy_kitchen" not in sys.modules:
        return None
    try:
        return metadata.version("comfy-kitchen")
    except metadata.PackageNotFoundError:
        return "unknown"


def remove_training_fallbacks() -> list[str]:
    """Rebind `comfy` in each of GATED_MODULES to the ungated view; returns the modules patched."""
    import comfy
    import comfy.model_management
    import comfy.quant_ops

    management = _View(comfy.model_management, in_training=False)
    quant_ops = _View(comfy.quant_ops, ck=_CountingKitchen(comfy.quant_ops.ck))
    view = _View(comfy, model_management=management, quant_ops=quant_ops)
    for name in GATED_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        module.comfy = view
        PATCHED.append(name)
    return PATCHED
