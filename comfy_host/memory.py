"""Devices, loading models with ComfyUI's model management, and placing a reward's weights.

A reward (PSI_REWARD) keeps its weights on the CPU between runs; for a run they are
moved to the compute device and back afterwards (`place_reward`, `return_reward`), also
when the run fails. Both the samplers' bridge and the scorer node place rewards this way.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

import comfy.model_management as model_management

from .compat import host_symbol


def compute_device() -> torch.device:
    """The device ComfyUI computes on."""
    return model_management.get_torch_device()


def intermediate_device() -> torch.device:
    """Where ComfyUI keeps results between nodes."""
    return host_symbol("comfy.model_management.intermediate_device")()


def load_models(patchers: list, memory: float) -> None:
    """Load `patchers` together, asking ComfyUI to keep `memory` bytes free for the pass."""
    load_models_gpu = host_symbol("comfy.model_management.load_models_gpu")
    load_models_gpu(patchers, memory_required=memory, minimum_memory_required=memory)


def ensure_loaded(patcher) -> None:
    """Load `patcher` where ComfyUI has not loaded it. Asking ComfyUI to load a loaded model
    re-runs its memory freeing (which may unload another model mid-pass), so it is not asked."""
    if patcher not in model_management.loaded_models():
        model_management.load_models_gpu([patcher])


def empty_cache() -> None:
    """Give the device's cached memory back (ComfyUI's soft_empty_cache)."""
    host_symbol("comfy.model_management.soft_empty_cache")()


def place_reward(reward, device: torch.device, make_room: bool = False) -> torch.device | None:
    """Move the reward's weights (`modules()`/`to()`) to `device`, outside inference mode
    (they take part in gradient passes); returns the device they came from, or None where
    nothing moved (no weights, or already there). make_room: first ask ComfyUI to free
    1.2 × the reward's `memory_bytes()` on `device` (for callers that did not load their
    models with an estimate that counts the reward)."""
    modules = list(reward.modules()) if hasattr(reward, "modules") else []
    if not modules:
        return None
    home = getattr(reward, "device", torch.device("cpu"))
    if home == device:
        return None
    if make_room and hasattr(reward, "memory_bytes"):
        model_management.free_memory(reward.memory_bytes() * 1.2, device)
    with torch.inference_mode(False):
        reward.to(device)
    return home


def return_reward(reward, home: torch.device | None) -> None:
    """Move the reward back to `home` (what place_reward returned; None: nothing to do)."""
    if home is not None:
        with torch.inference_mode(False):
            reward.to(home)


@contextlib.contextmanager
def reward_on(reward, device: torch.device, make_room: bool = False) -> Iterator[None]:
    """The reward's weights on `device` inside the block, back where they were after it."""
    home = place_reward(reward, device, make_room)
    try:
        yield
    finally:
        return_reward(reward, home)
