"""`python -m psi_core.toy`: one method on the exact-target toy, metrics as JSON.

Example: python -m psi_core.toy --method pcnl --nfe 500 --dim 2 --kind flow --json
"""

from __future__ import annotations

import argparse
import json
import sys

from ..families import FAMILIES
from ..names import METHODS, PCNL
from ..weights import AllParticlesInvalidError, ProposalDivergedError
from .problems import DENOISERS, figure1
from .run import ToySettings, run_toy


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m psi_core.toy", description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=METHODS, default=PCNL, help="initial-particle method (bon: Best-of-N, no SMC)")
    parser.add_argument("--nfe", type=int, default=500, help="total budget of function evaluations")
    parser.add_argument("--dim", type=int, default=2, help="dimension, 2 to 16384")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", choices=FAMILIES, default="flow", help="eps (x = x0 + σε) or flow (x = (1−σ)x0 + σε)")
    parser.add_argument("--denoiser", choices=DENOISERS, default="tweedie",
                        help="tweedie: exact E[x0|x]; distilled: the exact flow map (a few-step model), lcm kernel, "
                             "start from pure noise")
    parser.add_argument("--step-size", type=float, default=0.5, help="MCMC step size δ")
    parser.add_argument("--steps", type=int, default=25, help="SMC steps")
    parser.add_argument("--chains", type=int, default=10, help="MCMC chains")
    parser.add_argument("--gradient-free", action="store_true", help="SMC proposes from the model kernel (forward passes only)")
    parser.add_argument("--adapt-step-size", dest="fixed_step_size", action="store_false",
                        help="tune δ during burn-in (the default)")
    parser.add_argument("--fixed-step-size", dest="fixed_step_size", action="store_true",
                        help="keep δ fixed (no adaptation during burn-in)")
    parser.add_argument("--untempered", action="store_true", help="SMC targets λ = 1 throughout (no tempering)")
    parser.add_argument("--guidance-clip", type=float, default=1.0,
                        help="max RMS of the guided shift in noise standard deviations (0 = off)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(fixed_step_size=False)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        problem = figure1(args.kind, steps=args.steps, dim=args.dim, denoiser=args.denoiser)
        report = run_toy(problem, ToySettings(
            method=args.method, nfe=args.nfe, seed=args.seed, step_size=args.step_size, num_chains=args.chains,
            gradient_free=args.gradient_free, adapt_step_size=not args.fixed_step_size,
            tempering=not args.untempered, guidance_clip=args.guidance_clip,
            target_samples=2000 if args.dim <= 1024 else 500))
    except (ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ProposalDivergedError, AllParticlesInvalidError) as error:
        print(f"error: the run failed: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>20}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
