"""Custom socket types of the pack.

PSI_REWARD: an object following `rewards.base.Reward` — `name`, `differentiable`,
    `__call__(images [B, 3, H, W] float32 in [0, 1]) -> [B] float32`, `modules()`,
    `to(device)`, `memory_bytes()`. Per-prompt targets travel inside the object.
PSI_TRACE: a `psi_core.trace.Trace` (what a run did: MCMC acceptance and rewards,
    SMC ESS, weights, ancestors, NFE) for the particle visualizer; `to_dict()` gives JSON.
"""

from comfy_api.latest import io

PsiReward = io.Custom("PSI_REWARD")
PsiTrace = io.Custom("PSI_TRACE")
