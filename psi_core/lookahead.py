"""The look-ahead reward r̂(x, σ) = r(D(x, σ)) and its gradient, in micro-batches.

r̂ is the intermediate reward of Ψ-Sampler and of TDS (Wu et al. 2023) and DAS (Kim et
al. 2025): the reward of the denoiser's prediction of the clean sample,

    r̂(x, σ) = r(x̂0(x, σ))  [B],   ∇_x r̂ = (∂x̂0/∂x)ᵀ ∇r(x̂0)  [B, ...]  (backpropagated through D)

`denoiser(x[B, ...], sigma[B]) -> x̂0[B, ...]` is ComfyUI's CFG-combined denoiser
(Tweedie's estimate E[x0 | x], Efron 2011); `reward(x̂0[B, ...]) -> [B]` scores predicted clean
latents (the host bridge composes VAE decoding and an image reward). Particles
are independent batch elements, so ∇ of the batch sum gives every particle's own
gradient; micro-batches of `grad_batch_size` bound the memory of the backward pass
whatever the number of particles. Rewards are returned in float32; a NaN or ±inf
reward marks that particle invalid (reward −inf, gradient 0).

The look-ahead reward may be an approximation of the reward the target is defined by
(Ψ-Sampler, arXiv 2506.01320, defines the target by r of the real decode; a
look-ahead may decode with a cheaper model, e.g. the Tiny AutoEncoder TAESD of
madebyollin). Then `final_reward` is the exact r(x0) of clean latents: the SMC
scores its final particles with it, so the twist potentials use r̂ and the target
stays p0·exp(r/α) (see smc.py for the weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from . import validation
from .budget import NFECounter

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LatentReward = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Evaluation:
    """r̂ and friends at a batch of states x (one row per particle).

    x0_hat: [B, ...] predicted clean latents D(x, σ) (x itself at σ = 0)
    reward: [B] float32 r̂(x, σ); −inf where the reward was not finite
    grad:   [B, ...] float32 ∇_x r̂(x, σ), or None for a forward-only evaluation
    """

    x0_hat: torch.Tensor
    reward: torch.Tensor
    grad: torch.Tensor | None

    def select(self, index: torch.Tensor) -> "Evaluation":
        """Rows `index` (resampling / thinning): never recompute, index the cache."""
        idx = index.to(self.reward.device)
        return Evaluation(
            x0_hat=self.x0_hat[idx.to(self.x0_hat.device)],
            reward=self.reward[idx],
            grad=None if self.grad is None else self.grad[idx.to(self.grad.device)],
        )

    @staticmethod
    def concat(parts: list["Evaluation"]) -> "Evaluation":
        grads = [p.grad for p in parts]
        return Evaluation(
            x0_hat=torch.cat([p.x0_hat for p in parts]),
            reward=torch.cat([p.reward for p in parts]),
            grad=None if any(g is None for g in grads) else torch.cat(grads),
        )

    @property
    def valid(self) -> torch.Tensor:
        return torch.isfinite(self.reward)


class Lookahead:
    """Evaluates r̂(x, σ) (and optionally ∇_x r̂) for any number of particles.

    grad_batch_size: particles per forward+backward pass (memory bound).
    forward_batch_size: particles per forward-only pass (defaults to grad_batch_size).
    counter: NFECounter updated with every particle evaluated.
    final_reward: the exact reward r(x0[B, ...]) -> [B] of clean latents where `reward`
        is an approximate look-ahead reward r̂ (None: `reward` is exact).
    """

    def __init__(self, denoiser: Denoiser, reward: LatentReward, grad_batch_size: int = 1,
                 forward_batch_size: int | None = None, counter: NFECounter | None = None,
                 before_batch: Callable[[], None] | None = None, final_reward: LatentReward | None = None):
        self.denoiser = denoiser
        self.reward = reward
        self.final_reward = final_reward
        self.grad_batch_size = validation.integer_at_least("grad_batch_size", grad_batch_size, 1)
        self.forward_batch_size = validation.integer_at_least(
            "forward_batch_size", forward_batch_size or grad_batch_size, 1)
        self.counter = counter if counter is not None else NFECounter()
        self.before_batch = before_batch  # e.g. the host's interrupt check
        self.invalid_count = 0

    def __call__(self, x: torch.Tensor, sigma: float, need_grad: bool) -> Evaluation:
        size = self.grad_batch_size if need_grad else self.forward_batch_size
        parts = [self._evaluate(chunk, float(sigma), need_grad) for chunk in torch.split(x, size)]
        return Evaluation.concat(parts)

    @property
    def approximate(self) -> bool:
        """Whether r̂ is an approximation whose final particles must be scored again with r."""
        return self.final_reward is not None

    def exact_reward(self, x0: torch.Tensor) -> torch.Tensor:
        """r(x0) [K] float32 of clean latents x0 [K, ...] with the exact reward (forward only,
        in forward micro-batches; −inf where not finite, counted as invalid)."""
        if self.final_reward is None:
            raise ValueError("this look-ahead has no separate final reward: its r̂ at σ = 0 is r itself")
        parts = []
        for chunk in torch.split(x0, self.forward_batch_size):
            if self.before_batch is not None:
                self.before_batch()
            with torch.no_grad():
                parts.append(self.final_reward(chunk).reshape(-1).float())
        return self._mark_invalid(torch.cat(parts), None)[0]

    def _mark_invalid(self, reward: torch.Tensor, grad: torch.Tensor | None):
        valid = torch.isfinite(reward)
        if bool(valid.all()):
            return reward, grad
        self.invalid_count += int((~valid).sum())
        reward = torch.where(valid, reward, torch.full_like(reward, -math.inf))
        if grad is not None:
            mask = valid.reshape(-1, *([1] * (grad.ndim - 1)))
            grad = torch.where(mask & torch.isfinite(grad), grad, torch.zeros_like(grad))
        return reward, grad

    def _evaluate(self, x: torch.Tensor, sigma: float, need_grad: bool) -> Evaluation:
        if self.before_batch is not None:
            self.before_batch()
        sigma_batch = torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)
        if need_grad:
            # ComfyUI runs nodes under inference_mode: leave it and copy the input so
            # autograd can record the graph.
            with torch.inference_mode(False), torch.enable_grad():
                x_in = x.detach().clone().requires_grad_(True)
                x0_hat = self.denoiser(x_in, sigma_batch) if sigma > 0 else x_in
                reward = self.reward(x0_hat).reshape(-1)
                (grad,) = torch.autograd.grad(reward.sum(), x_in)
            x0_hat, reward, grad = x0_hat.detach(), reward.detach(), grad.detach().float()
        else:
            with torch.no_grad():
                x0_hat = self.denoiser(x, sigma_batch) if sigma > 0 else x
                reward = self.reward(x0_hat).reshape(-1)
            grad = None
        reward, grad = self._mark_invalid(reward.float(), grad)
        self.counter.add(x.shape[0], need_grad)
        return Evaluation(x0_hat=x0_hat, reward=reward, grad=grad)
