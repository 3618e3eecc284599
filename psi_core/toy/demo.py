"""The paper's Figure-1 comparison on the exact-target toy (README command one).

Every method gets the same NFE budget on the 2-D flow toy; each runs for several
seeds. Writes a PNG (prior samples, exact target, prior-initialised SMC,
MALA+SMC, Ψ-Sampler; particles of the first few seeds, dot size ∝ weight) and
prints a table of metrics, mean ± sd over seeds. The table uses 30 seeds by
default because a handful of seeds can rank the methods either way (see
docs/benchmarks.md, "2-D toy over 60 seeds").

    python -m psi_core.toy.demo [--out out/figure1.png] [--seeds 30] [--figure-seeds 5] [--nfe 500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from ..budget import NFECounter, plan_budget
from ..initial import InitialConfig, draw_initial
from ..lookahead import Lookahead
from ..rng import make_generator
from ..smc import SMCConfig, run_smc
from .plot import BOUNDS, Panel, draw_panels
from .problems import figure1
from .run import ToySettings, run_toy

TABLE_METHODS = ("prior", "topk", "ula", "mala", "pcnl", "bon")
LABELS = {"prior": "prior SMC (TDS)", "topk": "Top-K + SMC", "ula": "ULA + SMC", "mala": "MALA + SMC",
          "pcnl": "Psi-Sampler (pCNL)", "bon": "Best-of-N"}
COLUMNS = ("energy_distance", "reward_gap", "mode_mass_error", "modes_covered", "acceptance", "nfe")


def _particles(problem, method: str, nfe: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    steps = problem.sigmas.numel() - 1
    plan = plan_budget(method, nfe, steps, 10)
    generator = make_generator(seed)
    lookahead = Lookahead(problem.denoiser, problem.reward, grad_batch_size=64, counter=NFECounter())
    config = InitialConfig(method=method, num_particles=plan.num_particles, num_chains=10,
                           mcmc_steps=max(plan.mcmc_steps, 1), burn_in=plan.mcmc_steps // 2,
                           alpha_mcmc=problem.alpha_mcmc)
    initial = draw_initial(config, lookahead, problem.start(), (problem.dim,), float(problem.sigmas[0]), generator)
    result = run_smc(initial, problem.sigmas, lookahead,
                     SMCConfig(alpha=problem.alpha, kernel=problem.kernel, output="all"),
                     problem.family, generator)
    return result.particles, result.log_weights.normalized


def _fmt(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3g}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m psi_core.toy.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/figure1.png")
    parser.add_argument("--seeds", type=int, default=30, help="seeds behind the table")
    parser.add_argument("--figure-seeds", type=int, default=5, help="seeds overlaid in the figure")
    parser.add_argument("--nfe", type=int, default=500)
    parser.add_argument("--kind", default="flow", choices=("flow", "eps"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    problem = figure1(args.kind)
    rows = {m: [run_toy(problem, ToySettings(method=m, nfe=args.nfe, seed=s)) for s in range(args.seeds)]
            for m in TABLE_METHODS}

    print(f"Figure-1 toy ({args.kind}, d=2, {args.nfe} NFE, α={problem.alpha}, {args.seeds} seeds); "
          f"exact E[r] under the target = {problem.target_reward_mean:.4f}")
    header = f"{'method':<18}" + "".join(f"{c:>22}" for c in COLUMNS)
    print(header)
    print("-" * len(header))
    for m in TABLE_METHODS:
        print(f"{LABELS[m]:<18}" + "".join(f"{_fmt([r[c] for r in rows[m]]):>22}" for c in COLUMNS))
    totals = rows["pcnl"][0]["modes_total"]
    print(f"(modes_covered counts target modes holding ≥ 5% of the target mass; there are {totals})")
    ratio = (statistics.mean(r["energy_distance"] for r in rows["pcnl"])
             / statistics.mean(r["energy_distance"] for r in rows["prior"]))
    print(f"Psi-Sampler / prior SMC mean energy distance: {ratio:.2f} "
          f"(K = {rows['pcnl'][0]['particles']} vs {rows['prior'][0]['particles']} particles at this budget)")

    gen = make_generator(12345)
    prior_samples, _ = problem.prior.sample(1000, gen)
    target_samples, _ = problem.target.sample(1000, gen)
    panels = [Panel("prior p0 (exact samples)", prior_samples, None, (90, 90, 90)),
              Panel("target p0*exp(r/alpha) (exact)", target_samples, None, (30, 120, 30))]
    for method, colour in (("prior", (200, 60, 40)), ("mala", (200, 140, 0)), ("pcnl", (40, 80, 200))):
        pts, wts = zip(*(_particles(problem, method, args.nfe, s) for s in range(args.figure_seeds)))
        panels.append(Panel(f"{LABELS[method]}", torch.cat(pts), torch.cat(wts), colour))
    lo, hi = BOUNDS
    grid = torch.linspace(lo, hi, 120, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    reward_map = problem.reward(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)).reshape(120, 120)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw_panels(panels, contours=reward_map).save(out)
    print(f"wrote {out} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
