"""Progress bars with latent previews, interrupt checks, and the per-iteration reports of
the Ψ samplers: the initial sampler's MCMC iterations and the SMC's steps (Yoon et al.,
arXiv 2506.01320), each sent as a `psi.*` event and shown as node text (see `events`).
"""

from __future__ import annotations

import math

import torch

import latent_preview

from .compat import host_symbol
from .events import send_event, show_text


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception where the user cancelled the prompt."""
    host_symbol("comfy.model_management.throw_exception_if_processing_interrupted")()


def finite_stats(values: torch.Tensor) -> tuple[float | None, float | None]:
    """(mean, max) of the finite entries of `values`; None where there are none."""
    v = values.detach().double().cpu().reshape(-1)
    v = v[torch.isfinite(v)]
    if v.numel() == 0:
        return None, None
    return float(v.mean()), float(v.max())


def _fmt(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.4g}"


def sampler_callback(model, steps: int):
    """ComfyUI's sampling callback (progress bar of `steps` with latent previews) for a MODEL."""
    return latent_preview.prepare_callback(model, steps)


class MCMCProgress:
    """`on_iteration(i, total, record)` for the initial sampler: progress bar with a
    preview of the best look-ahead of the latest iteration, event, interrupt check."""

    def __init__(self, patcher, total: int, bridge, counter=None):
        self.bridge = bridge
        self.counter = counter
        self.callback = sampler_callback(patcher, total)

    def __call__(self, i: int, total: int, record) -> None:
        check_interrupt()
        evaluation = self.bridge.last_evaluation
        if evaluation is not None:
            best = int(torch.argmax(evaluation.reward.cpu()))
            x0 = evaluation.x0_hat[best:best + 1]
            self.callback(i - 1, x0, x0, total)
        mean, top = finite_stats(record.reward)
        acceptance = float(record.accepted.float().mean())
        send_event("psi.mcmc_step", {
            "iteration": i, "total": total, "burn_in": bool(record.burn_in), "step_size": record.step_size,
            "acceptance": acceptance, "reward_mean": mean, "reward_max": top,
            "nfe": None if self.counter is None else self.counter.as_dict(),
        })
        show_text(f"MCMC {i}/{total} · accept {acceptance:.2f} · r̂ mean {_fmt(mean)} max {_fmt(top)}")


class SMCProgress:
    """`on_step(i, total, record, state)` for the SMC: ComfyUI's k-diffusion callback
    (progress bar, preview of the heaviest particle first, SamplerCustomAdvanced's
    denoised output), event, interrupt check."""

    def __init__(self, callback, sigmas: torch.Tensor, counter=None):
        self.callback = callback
        self.sigmas = sigmas
        self.counter = counter

    def _report(self, i: int, denoised: torch.Tensor, x: torch.Tensor) -> None:
        if self.callback is not None:
            sigma = self.sigmas[i]
            self.callback({"i": i, "denoised": denoised, "x": x, "sigma": sigma, "sigma_hat": sigma})

    def on_step(self, i: int, total: int, record, state) -> None:
        check_interrupt()
        if i < total:  # the last step is reported by `finish` with the chosen output
            order = torch.argsort(state.log_weights.log_w, descending=True, stable=True)
            self._report(i - 1, state.evaluation.x0_hat[order.to(state.x.device)], state.x[order.to(state.x.device)])
        mean, top = finite_stats(record.reward)
        send_event("psi.smc_step", {
            "step": i, "total": total, "sigma": record.sigma, "sigma_next": record.sigma_next,
            "ess": record.ess_after, "ess_before": record.ess, "resampled": bool(record.resampled),
            "num_particles": int(record.reward.numel()), "reward_mean": mean, "reward_max": top,
            "weights": torch.exp(record.log_weights).tolist(),
            "nfe": None if self.counter is None else self.counter.as_dict(),
            "lambda": record.lam, "clipped": record.clipped,
        })
        show_text(f"SMC {i}/{total} · λ {record.lam:.2g} · ESS {record.ess_after:.2f}/{record.reward.numel()}"
                  f"{' · resampled' if record.resampled else ''} · r̂ mean {_fmt(mean)} max {_fmt(top)}")

    def finish(self, samples: torch.Tensor) -> None:
        self._report(len(self.sigmas) - 2, samples, samples)
