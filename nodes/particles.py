"""Initial particles as they travel between nodes, and per-stage random streams.

The Ψ initial sampler's LATENT carries its K particles under `PSI_KEY` (its
"samples" are the input latent repeated K times, so core nodes still see a
normal K-batch); the Ψ NOISE carries the same object. No ComfyUI imports here.
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass

import torch

from ..psi_core import Evaluation, InitialParticles, Trace, make_generator

#: key of the Ψ particles in a LATENT dict
PSI_KEY = "psi_particles"

#: relative tolerance when matching a schedule's first sigma to the particles'
SIGMA_RTOL = 1e-5


def stage_generator(seed: int, stage: str) -> torch.Generator:
    """A CPU generator for one stage ("initial", "smc") of a seed.

    Stages get unrelated streams, so the same seed on the initial sampler, on the
    SMC sampler and on a RandomNoise node never replays the same normals."""
    digest = hashlib.sha256(f"psi-sampler:{int(seed)}:{stage}".encode()).digest()
    return make_generator(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def _cpu(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().to("cpu").clone()


@dataclass(frozen=True)
class PsiParticles:
    """K starting particles drawn by the Ψ initial sampler (CPU tensors).

    eps:        [K, C, H, W] standard noise ε of each particle
    x:          [K, C, H, W] starting states x_0(ε) in model latent space
    evaluation: look-ahead at x (x̂0 [K, C, H, W], r̂ [K], ∇ [K, C, H, W] or None), or None
    sigma0:     the schedule's first sigma the states belong to
    family:     "eps" or "flow"
    alpha_mcmc: temperature of the tilt the particles follow (None: untilted)
    source:     identity of model/conditioning/VAE/reward the evaluation was made with
    """

    method: str
    family: str
    sigma0: float
    eps: torch.Tensor
    x: torch.Tensor
    evaluation: Evaluation | None
    alpha_mcmc: float | None
    trace: Trace
    source: tuple

    @property
    def num_particles(self) -> int:
        return int(self.eps.shape[0])

    @classmethod
    def from_initial(cls, initial: InitialParticles, family: str, source: tuple) -> "PsiParticles":
        ev = initial.evaluation
        evaluation = None if ev is None else Evaluation(_cpu(ev.x0_hat), _cpu(ev.reward), _cpu(ev.grad))
        return cls(method=initial.method, family=family, sigma0=float(initial.sigma0), eps=_cpu(initial.noise),
                   x=_cpu(initial.x), evaluation=evaluation, alpha_mcmc=initial.alpha_mcmc,
                   trace=copy.deepcopy(initial.trace), source=source)

    def matches_sigma(self, sigma0: float) -> bool:
        return math.isclose(float(sigma0), self.sigma0, rel_tol=SIGMA_RTOL, abs_tol=1e-9)

    def check_compatible(self, family: str, sigma0: float, shape: tuple[int, ...]) -> None:
        """Raise ValueError unless these particles can start a run of `family` at
        `sigma0` on latents of per-particle `shape` [C, H, W]."""
        if family != self.family:
            raise ValueError(f"the Ψ particles were drawn for a {self.family} model; this model is {family}")
        if tuple(shape) != tuple(self.x.shape[1:]):
            raise ValueError(f"the Ψ particles have latent shape {tuple(self.x.shape[1:])}; this run uses "
                             f"{tuple(shape)}")
        if not self.matches_sigma(sigma0):
            raise ValueError(
                f"the Ψ particles were drawn at sigma {self.sigma0:.6g} but this schedule starts at "
                f"{float(sigma0):.6g}: use the same scheduler, steps and denoise (or SIGMAS) on the Ψ initial "
                "sampler and on the SMC sampler")

    def to_initial(self, device: torch.device, source: tuple) -> InitialParticles:
        """Core InitialParticles on `device` (fresh copies: cached node outputs are never
        mutated). The cached evaluation is dropped when `source` differs (it would
        belong to another model, conditioning, VAE or reward)."""
        evaluation, tilt_reward = None, None
        if self.evaluation is not None and source == self.source:
            ev = self.evaluation
            grad = None if ev.grad is None else ev.grad.to(device).clone()
            evaluation = Evaluation(ev.x0_hat.to(device).clone(), ev.reward.clone(), grad)
        elif self.evaluation is not None:
            tilt_reward = self.evaluation.reward.clone()  # what the chains targeted: the weights correct it
        return InitialParticles(method=self.method, noise=self.eps.to(device).clone(), x=self.x.to(device).clone(),
                                sigma0=self.sigma0, evaluation=evaluation, alpha_mcmc=self.alpha_mcmc,
                                trace=copy.deepcopy(self.trace), tilt_reward=tilt_reward)
