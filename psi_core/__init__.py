"""psi_core: host-agnostic Ψ-Sampler (arXiv 2506.01320) in ComfyUI's sampler space.

Pure torch + numpy; imports nothing from ComfyUI. The pieces:

* names      — the method, kernel and resampling-scheme names, defined once
* families   — noise scaling and the ancestral (and lcm) kernels of EPS/V and flow models
* lookahead  — r̂(x, σ) = r(D(x, σ)) and ∇_x r̂ in micro-batches, with NFE counting
* mcmc       — pCNL, MALA and ULA kernels over the starting noise
* initial    — the initial-particle stage (pcnl, mala, ula, prior, topk)
* smc        — reward-guided (or gradient-free) SMC with ESS-adaptive resampling
* resampling — systematic, stratified, multinomial, residual, SSP
* weights    — log-weights, normalisation and ESS
* budget     — NFE accounting and budget splits
* trace      — what a run did, for the particle visualizer
* toy        — the exact-target Gaussian-mixture problem, its CLI and the demo
"""

from .budget import BudgetPlan, NFECounter, plan_budget
from .families import FAMILIES, StartMap, ancestral_coefficients, start_map
from .initial import InitialConfig, InitialParticles, draw_initial, thinning_schedule
from .lookahead import Evaluation, Lookahead
from .names import BASE_KERNELS, DEFAULT_SCHEME, INITIAL_METHODS, MCMC_KERNELS, METHODS
from .resampling import RESAMPLERS, resample
from .rng import make_generator
from .smc import OUTPUTS, SMCConfig, SMCResult, run_smc
from .trace import MCMCRecord, SMCRecord, Trace
from .weights import AllParticlesInvalidError, LogWeights, ProposalDivergedError

__all__ = [
    "AllParticlesInvalidError", "BASE_KERNELS", "BudgetPlan", "DEFAULT_SCHEME", "Evaluation", "FAMILIES",
    "INITIAL_METHODS", "InitialConfig", "InitialParticles", "LogWeights", "Lookahead", "MCMCRecord", "MCMC_KERNELS",
    "METHODS", "NFECounter", "OUTPUTS", "ProposalDivergedError", "RESAMPLERS", "SMCConfig", "SMCRecord", "SMCResult",
    "StartMap", "Trace", "ancestral_coefficients", "draw_initial", "make_generator", "plan_budget", "resample", "run_smc", "start_map", "thinning_schedule",
]
