"""Weighted sum of rewards: score = sum_i w_i * reward_i(images), [B, 3, H, W] -> [B].

Differentiable only where every part is. Weights must be finite, one per reward,
and not all zero (a negative weight turns a reward into a penalty).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import Reward
from ..psi_core.validation import finite


class WeightedSum(Reward):
    """sum_i weights[i] * rewards[i]; shared weight modules are listed once."""

    name = "weighted_sum"

    def __init__(self, rewards: Sequence[Reward], weights: Sequence[float] | None = None) -> None:
        rewards = list(rewards)
        if not rewards:
            raise ValueError("a weighted sum needs at least one reward")
        for i, reward in enumerate(rewards):
            if not isinstance(reward, Reward):
                raise TypeError(f"part {i} must be a Reward, got {type(reward).__name__}")
        weights = [1.0] * len(rewards) if weights is None else list(weights)
        if len(weights) != len(rewards):
            raise ValueError(f"got {len(rewards)} rewards but {len(weights)} weights; give one weight per reward")
        values = [finite(f"weight {i} ({rewards[i].name})", w) for i, w in enumerate(weights)]
        if all(w == 0.0 for w in values):
            raise ValueError(f"weights are all zero ({weights!r}); at least one must be non-zero")
        self.rewards = rewards
        self.weights = values
        self.differentiable = all(r.differentiable for r in rewards)

    def modules(self) -> list[torch.nn.Module]:
        seen: dict[int, torch.nn.Module] = {}
        for reward in self.rewards:
            for module in reward.modules():
                seen.setdefault(id(module), module)
        return list(seen.values())

    def parts(self, images: torch.Tensor) -> torch.Tensor:
        """Each part's score: [B, 3, H, W] -> [B, n_parts] (float32)."""
        return torch.stack([reward(images).to(images.device) for reward in self.rewards], dim=1)

    def score(self, images: torch.Tensor) -> torch.Tensor:
        total = None
        for weight, reward in zip(self.weights, self.rewards):
            if weight == 0.0:
                continue
            term = weight * reward(images).to(images.device)
            total = term if total is None else total + term
        return total

    def describe(self) -> str:
        return " + ".join(f"{w:g} * [{r.describe()}]" for w, r in zip(self.weights, self.rewards))
