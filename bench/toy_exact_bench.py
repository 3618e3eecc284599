"""Exactness at strong rewards: prior-initialised guided SMC against the exact tilted law of
psi_core/toy/exact.py (the Gaussian in closed form, the mixture by a float64 reference run).

    python bench/toy_exact_bench.py [--alphas 1 0.3 0.1] [--seeds 16] [--particles 4000]

prints E[r] and the posterior mean (estimate ± s.e. over seeds, exact value) and the
minimum ESS of prior-initialised guided SMC for every problem, family and α.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from pack import load_pack

load_pack()
from psi_sampler.psi_core.families import FAMILIES  # noqa: E402
from psi_sampler.psi_core.smc import SMCConfig  # noqa: E402
from psi_sampler.psi_core.toy.exact import (EXACT_PROBLEMS, exact_problem, exact_reference, over_seeds,  # noqa: E402
                                            smc_estimate, z_scores)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/toy_exact_bench.py", description=__doc__.splitlines()[0])
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 0.3, 0.1])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--particles", type=int, default=4000)
    parser.add_argument("--reference", type=int, default=2_000_000, help="mixture reference runs")
    parser.add_argument("--untempered", action="store_true", help="λ = 1 throughout (no tempering)")
    parser.add_argument("--guidance-clip", type=float, default=None,
                        help="max RMS of the proposal shift in units of the kernel's noise (0 = off)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print("| problem | family | α | E[r] SMC ± s.e. | E[r] exact | z(E[r]) | max abs z(mean) | min ESS (median, min) | "
          "λ | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in EXACT_PROBLEMS:
        for family in FAMILIES:
            problem = exact_problem(name, family)
            references = exact_reference(problem, args.alphas, args.reference)
            for alpha in args.alphas:
                options = {} if args.guidance_clip is None else {"guidance_clip": args.guidance_clip}
                if args.untempered:
                    options["tempering"] = False
                config = SMCConfig(alpha=alpha, output="all", **options)
                started = time.perf_counter()
                runs = [smc_estimate(problem, config, args.particles, s) for s in range(args.seeds)]
                estimate, exact = over_seeds(runs), references[alpha]
                z_r, z_m = z_scores(estimate, exact)
                ess = [r.min_ess for r in runs]
                print(f"| {name} | {family} | {alpha:g} | {estimate.reward:.3f} ± {estimate.reward_se:.3f} | "
                      f"{exact.reward:.3f} ± {exact.reward_se:.3f} | {z_r:+.1f} | {float(z_m.abs().max()):.1f} | "
                      f"{statistics.median(ess):.0f}, {min(ess):.0f} | {_lambda_summary(runs[0].trace)} | "
                      f"{time.perf_counter() - started:.0f} |", flush=True)
    return 0


def _lambda_summary(trace) -> str:
    lambdas = getattr(trace, "lambdas", None)
    if not lambdas:
        return "—"
    first_one = next((i for i, lam in enumerate(lambdas) if lam >= 1.0), len(lambdas))
    return f"λ0 {lambdas[0]:.2g}, 1 at step {first_one}/{len(lambdas) - 1}"


if __name__ == "__main__":
    sys.exit(main())
