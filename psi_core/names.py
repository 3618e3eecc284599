"""Every name a user or a saved workflow can choose, defined once.

Methods, kernels and resampling schemes are plain strings because they are the
option strings of the nodes (saved workflows store them, so they never change);
everything else — the core, the nodes, the toy, the benchmarks and the tests —
imports them from here.

Initial-particle methods (Ψ-Sampler, Yoon et al. 2025, arXiv 2506.01320, and the
baselines its experiments compare):

    pcnl   preconditioned Crank–Nicolson Langevin chains on the tilted prior (Ψ-Sampler)
    mala   Metropolis-adjusted Langevin chains (Roberts & Tweedie 1996)
    ula    unadjusted Langevin chains, every move accepted (Roberts & Tweedie 1996)
    prior  ε ~ N(0, I), the SMC of TDS / DAS started from the prior
    topk   the best K of N prior draws by look-ahead reward
    bon    Best-of-N without SMC (budget planning and benchmarks only, not an initial method)

SMC base kernels p_θ(x' | x): ancestral (k-diffusion's Euler ancestral step, Karras
et al. 2022) and lcm (the LCM sampler's re-noised prediction, Luo et al. 2023).

Resampling schemes (Chopin & Papaspiliopoulos 2020, ch. 9; SSP: Gerber, Chopin &
Whiteley 2019): systematic (the default), stratified, multinomial, residual, ssp; the
resampling module maps each to its function.
"""

from __future__ import annotations

PCNL, MALA, ULA, PRIOR, TOPK, BON = "pcnl", "mala", "ula", "prior", "topk", "bon"
MCMC_KERNELS = (PCNL, MALA, ULA)          # Markov kernels over the starting noise ε
ADAPTIVE_KERNELS = (PCNL, MALA)           # those with an acceptance test to tune δ against
INITIAL_METHODS = (*MCMC_KERNELS, PRIOR, TOPK)
METHODS = (PRIOR, TOPK, ULA, MALA, PCNL, BON)  # what an NFE budget can be planned for

ANCESTRAL, LCM = "ancestral", "lcm"
BASE_KERNELS = (ANCESTRAL, LCM)           # the SMC's model transition p_θ(x' | x)

SYSTEMATIC, STRATIFIED, MULTINOMIAL, RESIDUAL, SSP = "systematic", "stratified", "multinomial", "residual", "ssp"
DEFAULT_SCHEME = SYSTEMATIC
