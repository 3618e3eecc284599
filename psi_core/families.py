"""How a sampler state relates to noise, and the SMC's base kernels: the stochastic steps
ComfyUI's samplers take.

Two families cover ComfyUI's models (its `model_sampling` classes; the σ parameterisation
and the ancestral steps of k-diffusion, Karras et al. 2022):

* ``"eps"`` — EPS and V-prediction models: x = x0 + σ·ε.
* ``"flow"`` — CONST (rectified-flow) models such as SD3 and FLUX: x = (1−σ)·x0 + σ·ε.

The ancestral kernels are the Gaussian transitions p_θ(x' | x) = N(μ, s²·I) behind
ComfyUI's ``sample_euler_ancestral`` (eps) and ``sample_euler_ancestral_RF`` (flow),
written here as (μ, s) so the SMC can shift the mean and score proposals:

    μ = a·x + b·x̂0   [K, ...]  (x, x̂0 [K, ...]; a, b, s scalars of σ, σ', η)

The ``lcm`` kernel is ComfyUI's ``sample_lcm``, the multistep sampler of latent
consistency models (Luo et al. 2023): the prediction re-noised to the next sigma, the
usual sampler of distilled few-step models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .names import ANCESTRAL, BASE_KERNELS, LCM

FAMILIES = ("eps", "flow")


@dataclass(frozen=True)
class StartMap:
    """Affine map from standard noise ε to the starting state: x = scale·ε + offset.

    This is ComfyUI's ``model_sampling.noise_scaling``; the MCMC over ε needs its
    Jacobian (``scale``) to turn ∇_x r̂ into ∇_ε r̂.
    """

    scale: float
    offset: torch.Tensor | None  # [1 or B, C, H, W] or None for an empty latent

    def __call__(self, eps: torch.Tensor) -> torch.Tensor:
        x = eps * self.scale
        if self.offset is not None:
            x = x + self.offset.to(device=x.device, dtype=x.dtype)
        return x


def start_map(family: str, sigma0: float, latent: torch.Tensor | None, max_denoise: bool) -> StartMap:
    """ComfyUI's noise_scaling for the first sigma of a schedule.

    eps:  full denoise x = √(1+σ²)·ε + latent, else x = σ·ε + latent.
    flow: x = σ·ε + (1−σ)·latent.
    """
    sigma0 = float(sigma0)
    if family == "eps":
        scale = math.sqrt(1.0 + sigma0 ** 2) if max_denoise else sigma0
        offset = latent
    elif family == "flow":
        scale = sigma0
        offset = None if latent is None else latent * (1.0 - sigma0)
    else:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")
    if offset is not None and not bool(offset.any()):
        offset = None
    return StartMap(scale=scale, offset=offset)


@dataclass(frozen=True)
class KernelCoefficients:
    """μ = a·x + b·x̂0 [K, ...] and the noise scale s of one step σ → σ': p_θ(x'|x) = N(μ, s²I)."""

    a: float
    b: float
    s: float

    def mean(self, x: torch.Tensor, x0_hat: torch.Tensor) -> torch.Tensor:
        return x * self.a + x0_hat * self.b


def ancestral_coefficients(family: str, sigma: float, sigma_next: float, eta: float) -> KernelCoefficients:
    """Coefficients of ComfyUI's ancestral step from σ to σ' > 0.

    eps (``sample_euler_ancestral``):
        σ_up = min(σ', η·√(σ'²(σ²−σ'²)/σ²)),  σ_down = √(σ'² − σ_up²),
        μ = x̂0 + (σ_down/σ)(x − x̂0),  s = σ_up.
    flow (``sample_euler_ancestral_RF``):
        σ_down = σ'·(1 + (σ'/σ − 1)·η),  α' = 1−σ',  α_down = 1−σ_down,
        μ = (α'/α_down)·[(σ_down/σ)·x + (1 − σ_down/σ)·x̂0],
        s = √(σ'² − σ_down²·α'²/α_down²)   (μ = the Euler step, s = 0, when η = 0).
    """
    sigma, sigma_next, eta = float(sigma), float(sigma_next), float(eta)
    if sigma_next <= 0:
        raise ValueError(f"the ancestral kernel needs sigma_next > 0; got {sigma_next}")
    if family == "eps":
        sigma_up = min(sigma_next, eta * math.sqrt(sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2))
        sigma_down = math.sqrt(sigma_next ** 2 - sigma_up ** 2)
        ratio = sigma_down / sigma
        return KernelCoefficients(a=ratio, b=1.0 - ratio, s=sigma_up)
    if family == "flow":
        sigma_down = sigma_next * (1.0 + (sigma_next / sigma - 1.0) * eta)
        ratio = sigma_down / sigma
        if eta <= 0:
            return KernelCoefficients(a=ratio, b=1.0 - ratio, s=0.0)
        alpha_next = 1.0 - sigma_next
        alpha_down = 1.0 - sigma_down
        renoise = math.sqrt(max(sigma_next ** 2 - sigma_down ** 2 * alpha_next ** 2 / alpha_down ** 2, 0.0))
        scale = alpha_next / alpha_down
        return KernelCoefficients(a=scale * ratio, b=scale * (1.0 - ratio), s=renoise)
    raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")


def lcm_coefficients(family: str, sigma_next: float) -> KernelCoefficients:
    """Coefficients of ComfyUI's ``sample_lcm`` step to σ' > 0: x' = noise_scaling(σ', z, x̂0).

    eps:  x' = x̂0 + σ'·z,  flow:  x' = (1−σ')·x̂0 + σ'·z;  μ does not depend on x.
    """
    sigma_next = float(sigma_next)
    if sigma_next <= 0:
        raise ValueError(f"the lcm kernel needs sigma_next > 0; got {sigma_next}")
    if family == "eps":
        return KernelCoefficients(a=0.0, b=1.0, s=sigma_next)
    if family == "flow":
        return KernelCoefficients(a=0.0, b=1.0 - sigma_next, s=sigma_next)
    raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")


def kernel_coefficients(kernel: str, family: str, sigma: float, sigma_next: float, eta: float) -> KernelCoefficients:
    """(μ, s) of one step of `kernel` (ancestral: with noise η; lcm: η is not used)."""
    if kernel == ANCESTRAL:
        return ancestral_coefficients(family, sigma, sigma_next, eta)
    if kernel == LCM:
        return lcm_coefficients(family, sigma_next)
    raise ValueError(f"kernel must be one of {', '.join(BASE_KERNELS)}; got {kernel!r}")
