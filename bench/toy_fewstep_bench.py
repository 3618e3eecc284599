"""The few-step verdict: prior SMC (tempered as before, untempered, the current default), Ψ and
Best-of-N at equal NFE on exact problems at 4, 8 and 25 steps (psi_core/toy/problems.py).

    python bench/toy_fewstep_bench.py --seeds 30 --shard 0/2 --out results0.jsonl
    python bench/toy_fewstep_bench.py --table results0.jsonl results1.jsonl

Problems: rare_mode (16-D, prior 0.98/0.02, reward on the small mode, α = 0.3), far_tail
(64-D, r = −(x₁ − 3)²/2, α = 0.1) and figure1 (2-D, α = 0.1); denoisers tweedie (ancestral
kernel, flow σ 0.9 → 0) and distilled (the exact flow map, lcm kernel, σ 1 → 0); tweedie at 200
and 500 NFE, distilled at 200 NFE (500 NFE at 4 steps last); `regimes()` gives the order.
Per run: E[r] error, mode-mass error (rare_mode, figure1) or |posterior mean of x₁ − 30/11|
(far_tail), whether ≥ 50 % of the weight is on the rewarded region (the small mode; figure1's two
small modes; x₁ > 2), the energy distance with duplicates merged, the distinct initial and final
particles, and the MCMC acceptance. The table gives mean ± s.e. over seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys

import torch

from pack import load_pack

load_pack()
from psi_sampler.psi_core.names import BON, PCNL, PRIOR  # noqa: E402
from psi_sampler.psi_core.smc import LAST_NOISY  # noqa: E402
from psi_sampler.psi_core.toy.metrics import mode_masses  # noqa: E402
from psi_sampler.psi_core.toy.problems import FEW_STEP_PROBLEMS, few_step_problem  # noqa: E402
from psi_sampler.psi_core.toy.run import ToySettings, sample_toy, toy_metrics  # noqa: E402

STEPS = (4, 8, 25)
FAR_TAIL_MEAN = 30.0 / 11.0
METHODS = {
    "prior, tempered (before)": dict(method=PRIOR, tempering_ess=0.99, ess_by_steps=False,
                                     lambda_one_at=LAST_NOISY),
    "prior, untempered": dict(method=PRIOR, tempering=False),
    "prior, default": dict(method=PRIOR),
    "Ψ, 10 chains": dict(method=PCNL),
    "Ψ, distinct chains": dict(method=PCNL, distinct_chains=True),
    "Best-of-N": dict(method=BON),
}
# other budget splits, α_mcmc and zero burn-in: 4 steps, distilled, 200 NFE, rare_mode and far_tail
EXTRA = {
    "Ψ, distinct, ¾ budget": dict(method=PCNL, distinct_chains=True, initial_fraction=0.75),
    "Ψ, distinct, α_mcmc = 3α": dict(method=PCNL, distinct_chains=True, alpha_mcmc_factor=3.0),
    "Ψ, 10 chains, no burn-in": dict(method=PCNL, burn_in_fraction=0.0),
}


def rewarded_mass(name: str, problem, samples: torch.Tensor, weights: torch.Tensor) -> float:
    if name == "far_tail":
        w = weights.double() / weights.sum()
        return float(w[samples[:, 0].cpu() > 2.0].sum())
    masses = mode_masses(samples.cpu(), weights, problem.target)
    return float(masses[1] if name == "rare_mode" else masses[3:].sum())


def one_run(name: str, problem, settings: ToySettings) -> dict:
    run = sample_toy(problem, settings)
    report = toy_metrics(problem, run, settings.seed, 1000)
    w = run.weights.double() / run.weights.sum()
    if name == "far_tail":
        shape_error = abs(float((w * run.samples[:, 0].cpu().double()).sum()) - FAR_TAIL_MEAN)
    else:
        shape_error = report["mode_mass_error"]
    return {"e_r": report["reward_gap"], "shape": shape_error,
            "hit": rewarded_mass(name, problem, run.samples, run.weights) >= 0.5,
            "ed": report["energy_distance"], "distinct_initial": report["distinct_initial"],
            "distinct_final": report["distinct_final"], "particles": report["particles"],
            "acceptance": report["acceptance"], "nfe": report["nfe"]}


def regimes():
    """(problem, steps, denoiser, nfe, methods) in the order they are run, most telling first: the
    distilled model at 4 steps, then the Tweedie model at every step count, then the distilled one
    at 8 and 25 steps (each distilled evaluation integrates the flow map, ~100 denoiser calls)."""
    for name in FEW_STEP_PROBLEMS:
        yield name, 4, "distilled", 200, METHODS
    yield "far_tail", 4, "distilled", 200, EXTRA
    for steps in STEPS:
        for nfe in (200, 500):
            for name in FEW_STEP_PROBLEMS:
                yield name, steps, "tweedie", nfe, _methods(steps)
    for steps in (8, 25):
        for name in ("far_tail", "rare_mode", "figure1"):
            yield name, steps, "distilled", 200, _methods(steps)
    yield "rare_mode", 4, "distilled", 200, EXTRA
    for name in FEW_STEP_PROBLEMS:
        yield name, 4, "distilled", 500, METHODS


def _methods(steps: int) -> dict:
    """Beyond 4 steps K is small enough that 10 chains already give distinct particles (at 25
    steps distinct_chains returns 10: the two Ψ rows would be the same runs)."""
    if steps == 4:
        return METHODS
    return {k: v for k, v in METHODS.items() if k != "Ψ, 10 chains"}


def _done(path: str, seeds: int) -> set:
    """(problem, steps, denoiser, budget, method) groups already measured with `seeds` seeds in `path`."""
    counts: dict[tuple, int] = {}
    try:
        for line in open(path):
            r = json.loads(line)
            key = (r["problem"], r["steps"], r["denoiser"], r["budget"], r["method"])
            counts[key] = counts.get(key, 0) + 1
    except FileNotFoundError:
        pass
    return {k for k, n in counts.items() if n >= seeds}


def measure(args) -> None:
    index, count = (int(v) for v in args.shard.split("/"))
    torch.set_num_threads(1)
    done = _done(args.out, args.seeds)
    with open(args.out, "a") as out:
        for i, (name, steps, denoiser, nfe, methods) in enumerate(regimes()):
            if i % count != index:
                continue
            problem = few_step_problem(name, steps, denoiser)
            for label, options in methods.items():
                if (name, steps, denoiser, nfe, label) in done:
                    continue
                rows = []
                for seed in range(args.seeds):
                    row = one_run(name, problem, ToySettings(nfe=nfe, seed=seed, **options))
                    row.update(problem=name, steps=steps, denoiser=denoiser, budget=nfe, method=label, seed=seed)
                    rows.append(json.dumps(row) + "\n")
                out.writelines(rows)  # whole groups only: an interrupted group is run again
                out.flush()
            print(f"done {name} {steps} {denoiser} {nfe}", flush=True)


def _mse(values: list[float]) -> str:
    if len(values) < 2:
        return "—"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values) / math.sqrt(len(values)):.3f}"


def _mean_se(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) / math.sqrt(len(values))


def default_check(runs: dict[str, list[dict]]) -> str:
    """The done-when of the few-step defaults: how far "prior, default" is behind the better of the
    tempered (before) and untempered rows, in standard errors of the difference, on E[r] error and
    on mode/mean error ("behind" when positive; the criterion is ≤ 2)."""
    rows = [runs.get(k) for k in ("prior, default", "prior, tempered (before)", "prior, untempered")]
    if not all(rows):
        return ""
    parts = []
    for metric, label in (("e_r", "E[r] error"), ("shape", "mode/mean error")):
        d, ds = _mean_se([r[metric] for r in rows[0]])
        best, bs = min((_mean_se([r[metric] for r in rows[1]]), _mean_se([r[metric] for r in rows[2]])))
        z = (d - best) / max(math.hypot(ds, bs), 1e-12)
        parts.append(f"{label} {d - best:+.3f} ({z:+.1f} s.e.{', BEHIND' if z > 2 else ''})")
    return "default − better of before/untempered: " + "; ".join(parts)


def table(paths: list[str]) -> None:
    rows = [json.loads(line) for p in paths for line in open(p)]
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for r in rows:
        groups.setdefault((r["problem"], r["steps"], r["denoiser"], r["budget"]), {}).setdefault(r["method"], []).append(r)
    order = list(dict.fromkeys(k[:4] for k in regimes()))
    for key in [k for k in order if k in groups]:
        name, steps, denoiser, nfe = key
        shape = "mean error" if name == "far_tail" else "mode-mass error"
        print(f"\n**{name}, {steps} steps, {denoiser}, {nfe} NFE** ({len(next(iter(groups[key].values())))} seeds)\n")
        print(f"| method | K | E[r] error | {shape} | P(≥50 % rewarded) | energy distance (merged) | "
              "distinct initial | distinct final | acceptance |")
        print("|---|---|---|---|---|---|---|---|---|")
        for label in {**METHODS, **EXTRA}:
            runs = groups[key].get(label)
            if not runs:
                continue
            init = [r["distinct_initial"] for r in runs if r["distinct_initial"] is not None]
            acc = [r["acceptance"] for r in runs if r["acceptance"] is not None]
            print(f"| {label} | {runs[0]['particles']} | {_mse([r['e_r'] for r in runs])} | "
                  f"{_mse([r['shape'] for r in runs])} | {sum(r['hit'] for r in runs) / len(runs):.2f} | "
                  f"{_mse([r['ed'] for r in runs])} | {statistics.mean(init) if init else float('nan'):.1f} | "
                  f"{statistics.mean(r['distinct_final'] for r in runs):.1f} | "
                  f"{statistics.mean(acc) if acc else float('nan'):.2f} |")
        check = default_check(groups[key])
        if check:
            print(f"\n{check}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/toy_fewstep_bench.py", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--shard", default="0/1", help="i/n: run every n-th regime from the i-th")
    parser.add_argument("--out", default="fewstep.jsonl")
    parser.add_argument("--table", nargs="+", help="print the tables of these result files instead of running")
    args = parser.parse_args(argv)
    if args.table:
        table(args.table)
    else:
        measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
