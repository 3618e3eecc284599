"""The exact-target toy (the Figure 1 setting of Ψ-Sampler, arXiv 2506.01320): a Gaussian-mixture prior with its closed-form
denoiser in both parameterisations, a log-Gaussian reward, the exact tilted
target, metrics against it, the `python -m psi_core.toy` CLI and the demo."""

from .mixture import DiagonalMixture, GaussianReward, expected_reward, tilt
from .problems import ToyProblem, figure1, schedule
from .run import ToySettings, run_toy

__all__ = ["DiagonalMixture", "GaussianReward", "ToyProblem", "ToySettings", "expected_reward",
           "figure1", "run_toy", "schedule", "tilt"]
