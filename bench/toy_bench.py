"""Quality at equal NFE on the exact-target toy (benchmark table 1).

    python bench/toy_bench.py [--dims 2 64 1024 4096 16384] [--seeds 5] [--out docs/benchmarks.md]
    python bench/toy_bench.py --verdict tweedie|distilled --dims 2 64 256 1024 --seeds 20 [--untempered]
    python bench/toy_bench.py --verdict tweedie|distilled --dims 2 64 256 1024 --seeds 20 --tempered-psi

The second form prints the equal-NFE verdict (500 NFE, flow, the current defaults):
prior SMC, gradient-free SMC, MALA + SMC, Ψ and Best-of-N, mean ± standard error.

For every dimension and parameterisation, every initial-particle method with SMC,
Best-of-N and gradient-free SMC run at the same NFE; the table gives mean ± sd over
seeds of the reward gap |E[r] − E_target[r]|, energy distance (unbiased, and the plug-in
estimate whose bias grows as K falls) and mode-mass error,
and the acceptance of the MCMC methods. Appends a dated section to the output file.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from pack import load_pack

load_pack()
from psi_sampler.psi_core.lookahead import Lookahead  # noqa: E402
from psi_sampler.psi_core.names import BON, MALA, METHODS, PCNL, PRIOR  # noqa: E402
from psi_sampler.psi_core.rng import make_generator  # noqa: E402
from psi_sampler.psi_core.smc import SMCConfig, initial_lambda  # noqa: E402
from psi_sampler.psi_core.toy.problems import DENOISERS, figure1  # noqa: E402
from psi_sampler.psi_core.toy.run import ToySettings, run_toy  # noqa: E402
from psi_sampler.psi_core.weights import AllParticlesInvalidError, ProposalDivergedError  # noqa: E402

ROWS = (*((method, False) for method in METHODS), (PRIOR, True))


def _cell(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def table(dims: list[int], seeds: int, nfe_for) -> list[str]:
    lines = ["| kind | d | method | NFE | K | reward gap | energy distance | energy distance (plug-in) | "
             "mode-mass error | acceptance | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind in ("flow", "eps"):
        for dim in dims:
            problem = figure1(kind, dim=dim)
            nfe = nfe_for(dim)
            for method, gradient_free in ROWS:
                runs = [run_toy(problem, ToySettings(method=method, nfe=nfe, seed=s, gradient_free=gradient_free,
                                                     target_samples=2000 if dim <= 1024 else 300))
                        for s in range(seeds)]
                name = "gradient-free SMC" if gradient_free else {PCNL: "Ψ (pCNL)", BON: "Best-of-N"}.get(
                    method, f"{method} + SMC")
                lines.append(
                    f"| {kind} | {dim} | {name} | {runs[0]['nfe']} | {runs[0]['particles']} | "
                    f"{_cell([r['reward_gap'] for r in runs])} | {_cell([r['energy_distance'] for r in runs])} | "
                    f"{_cell([r['energy_distance_plugin'] for r in runs])} | {_cell([r['mode_mass_error'] for r in runs])} | "
                    f"{_cell([r['acceptance'] for r in runs])} | {statistics.mean(r['wall_s'] for r in runs):.2f} |")
                print(lines[-1], flush=True)
    return lines


VERDICT_ROWS = ((PRIOR, False, "prior SMC"), (PRIOR, True, "gradient-free SMC"), (MALA, False, "MALA + SMC"),
                (PCNL, False, "Ψ (pCNL + SMC)"), (BON, False, "Best-of-N"))


def _se(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {se:.3f}"


def verdict_table(dims: list[int], seeds: int, denoiser: str, nfe: int = 500, tempering: bool = True) -> list[str]:
    """The equal-NFE verdict with the current defaults (tempered twist, controlled shift,
    adaptive δ; `tempering=False` for λ = 1 throughout): flow family, mean ± standard error
    over seeds."""
    lines = ["| denoiser | d | method | K | reward gap | energy distance | final ESS | min ESS | acceptance | "
             "non-finite runs | wall s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for dim in dims:
        problem = figure1("flow", dim=dim, denoiser=denoiser)
        for method, gradient_free, name in VERDICT_ROWS:
            runs, failed = [], 0
            for seed in range(seeds):
                try:
                    runs.append(run_toy(problem, ToySettings(method=method, nfe=nfe, seed=seed, tempering=tempering,
                                                             gradient_free=gradient_free, target_samples=1000)))
                except (ProposalDivergedError, AllParticlesInvalidError):
                    failed += 1
            if not runs:
                lines.append(f"| {denoiser} | {dim} | {name} | — | — | — | — | — | — | {failed}/{seeds} | — |")
                continue
            lines.append(
                f"| {denoiser} | {dim} | {name} | {runs[0]['particles']} | {_se([r['reward_gap'] for r in runs])} | "
                f"{_se([r['energy_distance'] for r in runs])} | {_se([r['ess'] for r in runs])} | "
                f"{_se([r['min_ess'] for r in runs])} | {_se([r['acceptance'] for r in runs])} | {failed}/{seeds} | "
                f"{statistics.mean(r['wall_s'] for r in runs):.2f} |")
            print(lines[-1], flush=True)
    return lines


def tempered_psi_row(dim: int, seeds: int, denoiser: str, nfe: int = 500, chains: int = 10) -> str:
    """Ψ whose chains sample the tempered first target N(ε)·exp(λ_0·r̂/α) (α_mcmc = α/λ_0), with λ_0
    chosen by the SMC's own rule (`initial_lambda`) on `chains` prior draws; those draws cost
    `chains` forward evaluations beyond the NFE column. Same columns as `verdict_table`."""
    problem = figure1("flow", dim=dim, denoiser=denoiser)
    runs, lambdas = [], []
    for seed in range(seeds):
        probe = Lookahead(problem.denoiser, problem.reward, grad_batch_size=64)
        eps = torch.randn((chains, dim), generator=make_generator(50_000 + seed))
        reward = probe(problem.start()(eps), float(problem.sigmas[0]), need_grad=False).reward
        lam0 = max(initial_lambda(reward, SMCConfig(alpha=problem.alpha), None), 1e-3)
        lambdas.append(lam0)
        tempered = dataclasses.replace(problem, alpha_mcmc=problem.alpha / lam0)
        runs.append(run_toy(tempered, ToySettings(method=PCNL, nfe=nfe, seed=seed, num_chains=chains,
                                                  target_samples=1000)))
    return (f"| {denoiser} | {dim} | Ψ, tempered initial tilt (λ_0 {_se(lambdas)}) | {runs[0]['particles']} | "
            f"{_se([r['reward_gap'] for r in runs])} | {_se([r['energy_distance'] for r in runs])} | "
            f"{_se([r['ess'] for r in runs])} | {_se([r['min_ess'] for r in runs])} | "
            f"{_se([r['acceptance'] for r in runs])} | 0/{seeds} | {statistics.mean(r['wall_s'] for r in runs):.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/toy_bench.py", description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 64, 1024, 4096, 16384])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default="docs/benchmarks.md")
    parser.add_argument("--verdict", choices=DENOISERS, default=None,
                        help="print the equal-NFE verdict table (500 NFE, flow) for this denoiser instead")
    parser.add_argument("--untempered", action="store_true", help="verdict with λ = 1 throughout")
    parser.add_argument("--tempered-psi", action="store_true",
                        help="with --verdict: only the row of Ψ with a tempered initial tilt")
    args = parser.parse_args(argv)
    if args.verdict and args.tempered_psi:
        torch.set_num_threads(1)
        for dim in args.dims:
            print(tempered_psi_row(dim, args.seeds, args.verdict), flush=True)
        return 0
    if args.verdict:
        torch.set_num_threads(1)
        verdict_table(args.dims, args.seeds, args.verdict, tempering=not args.untempered)
        return 0
    started = time.perf_counter()
    lines = table(args.dims, args.seeds, lambda d: 500 if d == 2 else 400)
    header = [
        "", f"## Quality at equal NFE on the exact-target toy ({datetime.date.today().isoformat()})", "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, Python {platform.python_version()}, "
        f"torch {torch.__version__}. Command: `python bench/toy_bench.py --seeds {args.seeds}` "
        f"({time.perf_counter() - started:.0f} s). Figure-1 problem (α = α_mcmc = 0.1, 25 SMC steps, "
        "10 chains, δ = 0.5, half the NFE to the initial stage for MCMC and Top-K); d > 2 adds N(0, 1) "
        "nuisance coordinates, 16 of them rewarded. K = SMC particles at that NFE. Mean ± sd over seeds.", ""]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(header + lines) + "\n")
    print(f"appended to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
