"""Write a trace for analysis: `trace.to_dict()` as JSON and its arrays as one .npz.

Arrays (absent when the trace has no such stage; S steps, K particles, T iterations, C chains):

    smc_step, smc_sigma, smc_sigma_next, smc_ess, smc_ess_after  [S]
    smc_resampled [S] bool; smc_ancestors [S, K] int64; smc_log_weights, smc_reward [S, K] float64
    initial_reward, initial_log_weights [K] float64; selected [n] int64
    mcmc_iteration [T] int64; mcmc_step_size [T]; mcmc_burn_in [T] bool
    mcmc_accepted [T, C] bool; mcmc_reward [T, C] float64
    x0_hat_initial [K, ...] float32; x0_hat_step_<i> [K, ...] float32 for each recorded step i

Non-finite numbers (invalid rewards, zero weights' -inf log-weights) are written to the
JSON as null, keeping it strict JSON; the .npz keeps them exactly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class TracePaths:
    json: Path
    npz: Path


def write_trace(trace, folder: str | Path, prefix: str = "psi_trace") -> TracePaths:
    """Write `<folder>/<prefix>_<NNNNN>.json` and `.npz` with the first free number (ComfyUI's
    file-name style; `prefix` may name a subfolder, which is created). Returns both paths."""
    root = Path(folder).resolve()
    if not isinstance(prefix, str) or not prefix.strip() or prefix.startswith(("/", "\\")):
        raise ValueError(f"prefix must be a non-empty relative name; got {prefix!r}")
    base = (root / prefix).resolve()
    if root not in base.parents:
        raise ValueError(f"prefix {prefix!r} points outside {root}")
    base.parent.mkdir(parents=True, exist_ok=True)
    number = 1
    while True:
        stem = f"{base.name}_{number:05d}"
        paths = TracePaths(base.parent / f"{stem}.json", base.parent / f"{stem}.npz")
        if not paths.json.exists() and not paths.npz.exists():
            break
        number += 1
    with open(paths.json, "w", encoding="utf-8") as handle:
        json.dump(_strict(trace.to_dict()), handle, indent=1, allow_nan=False)
    with open(paths.npz, "wb") as handle:
        np.savez_compressed(handle, **trace_arrays(trace))
    return paths


def trace_arrays(trace) -> dict[str, np.ndarray]:
    """The trace's numbers as named numpy arrays (see the module docstring)."""
    arrays: dict[str, np.ndarray] = {"selected": np.asarray(list(trace.selected), dtype=np.int64)}
    if trace.smc:
        arrays.update({
            "smc_step": np.asarray([r.step for r in trace.smc], dtype=np.int64),
            "smc_sigma": np.asarray([r.sigma for r in trace.smc], dtype=np.float64),
            "smc_sigma_next": np.asarray([r.sigma_next for r in trace.smc], dtype=np.float64),
            "smc_ess": np.asarray([r.ess for r in trace.smc], dtype=np.float64),
            "smc_ess_after": np.asarray([r.ess_after for r in trace.smc], dtype=np.float64),
            "smc_resampled": np.asarray([r.resampled for r in trace.smc], dtype=bool),
            "smc_ancestors": _stack([r.ancestors for r in trace.smc], np.int64),
            "smc_log_weights": _stack([r.log_weights for r in trace.smc], np.float64),
            "smc_reward": _stack([r.reward for r in trace.smc], np.float64),
        })
    for name in ("initial_reward", "initial_log_weights"):
        value = getattr(trace, name)
        if value is not None:
            arrays[name] = _numpy(value, np.float64)
    if trace.mcmc:
        arrays.update({
            "mcmc_iteration": np.asarray([r.iteration for r in trace.mcmc], dtype=np.int64),
            "mcmc_step_size": np.asarray([r.step_size for r in trace.mcmc], dtype=np.float64),
            "mcmc_burn_in": np.asarray([r.burn_in for r in trace.mcmc], dtype=bool),
            "mcmc_accepted": _stack([r.accepted for r in trace.mcmc], bool),
            "mcmc_reward": _stack([r.reward for r in trace.mcmc], np.float64),
        })
    if trace.initial_x0_hat is not None:
        arrays["x0_hat_initial"] = _numpy(trace.initial_x0_hat, np.float32)
    for r in trace.smc:
        if r.x0_hat is not None:
            arrays[f"x0_hat_step_{r.step}"] = _numpy(r.x0_hat, np.float32)
    return arrays


def _numpy(t: torch.Tensor, dtype) -> np.ndarray:
    # via float32/float64/int64 on the CPU: numpy has no bfloat16
    source = t.detach().cpu()
    if source.dtype == torch.bool:
        return source.numpy().astype(dtype)
    if source.is_floating_point():
        source = source.double()
    return source.numpy().astype(dtype)


def _stack(rows: list[torch.Tensor], dtype) -> np.ndarray:
    return np.stack([_numpy(t, dtype) for t in rows])


def _strict(value):
    """Copy of JSON-able data with non-finite floats replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value
