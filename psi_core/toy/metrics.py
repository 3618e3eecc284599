"""Distances between a weighted particle set and the exact target mixture."""

from __future__ import annotations

import torch

from .mixture import DiagonalMixture


def energy_distance(x: torch.Tensor, weights: torch.Tensor, y: torch.Tensor) -> float:
    """Weighted energy distance 2E|X−Y| − E|X−X'| − E|Y−Y'| (X ~ Σ w_i δ_{x_i}, Y
    the exact samples y [M, d]); 0 iff the distributions agree."""
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    y = y.to(torch.float64)
    w = weights.to(torch.float64) / weights.sum()
    v = torch.full((y.shape[0],), 1.0 / y.shape[0], dtype=torch.float64)
    xy = w @ torch.cdist(x, y) @ v
    xx = w @ torch.cdist(x, x) @ w
    yy = v @ torch.cdist(y, y) @ v
    return float(2 * xy - xx - yy)


def mode_masses(x: torch.Tensor, weights: torch.Tensor, target: DiagonalMixture) -> torch.Tensor:
    """[M] weighted mass of particles assigned to each target component (most likely component)."""
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    labels = target.component_log_prob(x).argmax(dim=1)
    w = weights.to(torch.float64) / weights.sum()
    return torch.zeros(target.num_components, dtype=torch.float64).index_add_(0, labels, w)


def mode_report(x: torch.Tensor, weights: torch.Tensor, target: DiagonalMixture,
                min_mass: float = 0.05) -> dict[str, float | int]:
    """mode_mass_error: total variation ½Σ|m̂_k − m_k|; modes_total: target components
    holding ≥ min_mass; modes_covered: those of them holding any particle weight."""
    masses = mode_masses(x, weights, target)
    major = target.weights >= min_mass
    return {
        "mode_mass_error": float(0.5 * (masses - target.weights).abs().sum()),
        "modes_total": int(major.sum()),
        "modes_covered": int((major & (masses > 0)).sum()),
    }
